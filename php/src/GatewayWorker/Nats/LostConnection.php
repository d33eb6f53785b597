<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/** @internal The socket broke; the connection moves to another server before any caller sees it. */
final class LostConnection extends NatsException
{
}
