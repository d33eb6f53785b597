<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/** Some gateways did not answer a query in time; the answers that came are in $parts. */
final class PartialAnswerException extends NatsException
{
    /**
     * @param list<string> $missing the gateways that did not answer
     * @param list<array> $parts the Reply parts that came
     */
    public function __construct(public readonly array $missing, public readonly array $parts)
    {
        parent::__construct('gatewayworker: partial answer: gateways ' . implode(',', $missing) . ' did not answer');
    }
}
