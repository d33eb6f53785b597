<?php

// The echo of cmd/gwbench's bench protocol, for the PHP BusinessWorker:
// php bench/echo.php with NATS_URL, WORKERS (default 2) and STICKY (empty: off).

use GatewayWorker\Lib\Gateway;

require __DIR__ . '/../tests/bootstrap.php';

class Events
{
    public static function onMessage($client_id, $message)
    {
        Gateway::sendToCurrentClient($message);
    }
}

$worker = new GatewayWorker\BusinessWorker();
$worker->name = 'EchoBusinessWorker';
$worker->count = (int)(getenv('WORKERS') ?: 2);
$worker->natsUrls = getenv('NATS_URL') ?: 'nats://127.0.0.1:4222';
$worker->sticky = (bool)getenv('STICKY');
GatewayWorker\BusinessWorker::runAll();
