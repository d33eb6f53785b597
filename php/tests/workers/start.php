<?php

// The BusinessWorker of the integration tests: WORKERS processes running
// the Events class of EVENTS_PHP, on NATS_URL.
declare(strict_types=1);

require __DIR__ . '/../bootstrap.php';
require getenv('EVENTS_PHP');

$worker = new GatewayWorker\BusinessWorker();
$worker->name = 'TestBusinessWorker';
$worker->count = (int)(getenv('WORKERS') ?: 2);
$worker->natsUrls = (string)getenv('NATS_URL');
$worker->sticky = (bool)getenv('STICKY');

Workerman\Worker::runAll();
