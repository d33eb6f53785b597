<?php

declare(strict_types=1);

namespace GatewayWorker\Lib;

/**
 * The client whose event runs now, as in GatewayWorker: the BusinessWorker
 * sets it around each handler. Outside a worker it stays null, and the
 * Gateway methods about "the current client" throw.
 */
class Context
{
    public static ?string $client_id = null;
    /** The session as it was when the handler started ($_SESSION is the one it changes). */
    public static ?array $old_session = null;

    public static function clear(): void
    {
        self::$client_id = null;
        self::$old_session = null;
    }
}
