<?php

declare(strict_types=1);

use GatewayWorker\Lib\Context;
use GatewayWorker\Lib\Gateway;

/**
 * Tells each client, as JSON, what its handlers saw: $_SERVER, $_GET,
 * $_COOKIE, $data, $_SESSION and Context::$client_id, so that the
 * integration test checks them against what GatewayWorker gives.
 */
class Events
{
    private static ?int $worker = null;

    public static function onWorkerStart($businessWorker)
    {
        self::$worker = $businessWorker->id;
    }

    public static function onConnect($client_id)
    {
        Gateway::sendToCurrentClient(json_encode(['event' => 'connect', 'client_id' => $client_id,
            'context' => Context::$client_id, 'server' => $_SERVER, 'session' => $_SESSION, 'worker' => self::$worker]));
        $_SESSION = ['n' => 0];
    }

    public static function onWebSocketConnect($client_id, $data)
    {
        Gateway::sendToCurrentClient(json_encode(['event' => 'websocket', 'data' => $data,
            'get' => $_GET, 'cookie' => $_COOKIE, 'server' => $_SERVER, 'session' => $_SESSION]));
    }

    public static function onMessage($client_id, $message)
    {
        $_SESSION['n']++;
        if ($message === 'set') {
            Gateway::updateSession($client_id, ['via' => 'updateSession']);
        }
        Gateway::sendToCurrentClient(json_encode(['event' => 'message', 'session' => $_SESSION]));
    }
}
