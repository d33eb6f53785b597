<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/** A message is larger than the server's max_payload. */
class PayloadTooLargeException extends NatsException
{
}
