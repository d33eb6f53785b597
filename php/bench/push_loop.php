<?php

// The PHP-FPM case of a GatewayClient push: PHP is started once, and each
// "request" opens a connection, pushes, flushes and closes it. Prints the
// mean, p50 and p99 of RUNS (default 200) such pushes, and of RUNS
// sendToClient calls (a request its gateway answers; the client need not
// exist) and RUNS queries on a new connection (getAllClientIdCount, which
// first discovers the gateways), then recoverable pushes against plain
// ones in the same run (when the deployment has history): each waits for
// the stream to store it, as a plain one flushed waits for NATS.
// NATS_URL, NATS_TOKEN as for push.php.
declare(strict_types=1);

require __DIR__ . '/../tests/bootstrap.php';

use GatewayClient\Gateway;

Gateway::$natsUrls = getenv('NATS_URL') ?: 'nats://127.0.0.1:4222';
Gateway::$natsToken = getenv('NATS_TOKEN') ?: null;
$runs = (int)(getenv('RUNS') ?: 200);

function measure(string $what, int $runs, callable $f): void
{
    $f(); // warm: autoloading, the first connection
    $t = [];
    for ($i = 0; $i < $runs; $i++) {
        $start = hrtime(true);
        $f();
        $t[] = (hrtime(true) - $start) / 1e6;
    }
    sort($t);
    printf("%-58s mean %.2f ms  p50 %.2f ms  p99 %.2f ms  (%d runs)\n", $what, array_sum($t) / count($t),
        $t[intdiv(count($t), 2)], $t[min(count($t) - 1, (int)ceil(count($t) * 0.99) - 1)], count($t));
}

measure('sendToUid on a new connection (connect, publish, close)', $runs, static function (): void {
    Gateway::sendToUid('bench-user', 'hello from PHP');
    Gateway::close();
});
measure('sendToClient on a new connection (answered)', $runs, static function (): void {
    Gateway::sendToClient('gw1-0-1', 'hello from PHP');
    Gateway::close();
});
measure('getAllClientIdCount on a new connection', min($runs, 20), static function (): void {
    Gateway::getAllClientIdCount();
    Gateway::close();
});
try {
    Gateway::sendToUid('bench-user', 'probe', recoverable: true);
} catch (GatewayWorker\Nats\HistoryUnavailableException $e) {
    echo "recoverable pushes skipped: {$e->getMessage()}\n";
    exit;
}
measure('sendToUid recoverable on a new connection (stored)', $runs, static function (): void {
    Gateway::sendToUid('bench-user', 'hello from PHP', recoverable: true);
    Gateway::close();
});
measure('sendToUid on one connection, flushed', $runs, static function (): void {
    Gateway::sendToUid('bench-user', 'hello from PHP');
    Gateway::api()->connection()->flush();
});
measure('sendToUid recoverable on one connection (stored)', $runs, static function (): void {
    Gateway::sendToUid('bench-user', 'hello from PHP', recoverable: true);
});
