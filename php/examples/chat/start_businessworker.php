<?php

// GatewayWorker's start_businessworker.php with the Register address
// replaced by the NATS settings; Events.php next to it is found as
// Workerman's autoloader finds it.

use Workerman\Worker;
use GatewayWorker\BusinessWorker;

require_once __DIR__ . '/../../vendor/autoload.php';

$worker = new BusinessWorker();
$worker->name = 'ChatBusinessWorker';
$worker->count = 4;
$worker->natsUrls = getenv('NATS_URL') ?: 'nats://127.0.0.1:4222'; // was: $worker->registerAddress = '127.0.0.1:1236';
$worker->natsToken = getenv('NATS_TOKEN') ?: null;

if (!defined('GLOBAL_START')) {
    Worker::runAll();
}
