<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/** Base of every error of the NATS client and the gateway API. */
class NatsException extends \RuntimeException
{
}
