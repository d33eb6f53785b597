<?php

declare(strict_types=1);

namespace Workerman;

use GatewayWorker\BusinessWorker;

/**
 * Only what a GatewayWorker start script calls on Workerman's Worker, so
 * that start_businessworker.php keeps its last line. gatewayworker's PHP
 * package replaces Workerman in a worker deployment: do not install both.
 */
class Worker
{
    /** Starts every BusinessWorker created, as BusinessWorker::runAll(). */
    public static function runAll(): void
    {
        BusinessWorker::runAll();
    }
}
