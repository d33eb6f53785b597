<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/** A request's subject has no subscriber: the server answered with status 503. */
class NoRespondersException extends NatsException
{
}
