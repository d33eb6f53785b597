<?php

// One GatewayClient push from a fresh process: connect, publish, flush,
// close. For BENCHMARKS.md (php/bench/push.sh runs it).
declare(strict_types=1);

require __DIR__ . '/../tests/bootstrap.php';

GatewayClient\Gateway::$natsUrls = getenv('NATS_URL') ?: 'nats://127.0.0.1:4222';
GatewayClient\Gateway::$natsToken = getenv('NATS_TOKEN') ?: null;
GatewayClient\Gateway::sendToUid('bench-user', 'hello from PHP');
GatewayClient\Gateway::close();
