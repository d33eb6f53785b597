<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/** An answer did not come in time. */
class TimeoutException extends NatsException
{
}
