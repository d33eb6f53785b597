<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/** A message received on a subscription. */
final class Message
{
    /**
     * @param array<string, list<string>> $headers
     */
    public function __construct(
        public readonly string $subject,
        public readonly ?string $reply,
        public readonly string $data,
        public readonly array $headers = [],
        /** The status of a header-only message ("503" for no responders), or "". */
        public readonly string $status = '',
    ) {
    }
}
