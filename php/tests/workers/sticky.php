<?php

declare(strict_types=1);

use GatewayWorker\Lib\Gateway;

/**
 * Per-client state in static variables, as GatewayWorker applications keep
 * it: each answer says how many messages of the client this process has
 * seen, whether it ran the client's onConnect, and its pid. With a sticky
 * BusinessWorker the count goes 1, 2, 3... while the process lives.
 */
class Events
{
    /** @var array<string, array{connected: bool, n: int}> */
    private static array $clients = [];

    public static function onConnect($client_id)
    {
        self::$clients[$client_id] = ['connected' => true, 'n' => 0];
    }

    public static function onMessage($client_id, $message)
    {
        self::$clients[$client_id] ??= ['connected' => false, 'n' => 0];
        $n = ++self::$clients[$client_id]['n'];
        Gateway::sendToCurrentClient(json_encode([
            'k' => (int)substr($message, 1), 'n' => $n, 'connected' => self::$clients[$client_id]['connected'], 'pid' => getmypid(),
        ]));
    }

    public static function onClose($client_id)
    {
        unset(self::$clients[$client_id]);
    }
}
