<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/** No server of the list could be reached, or one refused the connection (credentials, TLS). */
class ConnectionException extends NatsException
{
}
