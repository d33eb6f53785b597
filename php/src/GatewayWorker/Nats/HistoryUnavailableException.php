<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/**
 * History is unavailable: the NATS server has no JetStream, or no stream
 * stores recoverable pushes (gateways started with --history=false, or none
 * started yet), or the stream does not allow direct gets.
 */
class HistoryUnavailableException extends NatsException
{
}
