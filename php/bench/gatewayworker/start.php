<?php
// PHP GatewayWorker itself (walkor/gateway-worker on workerman), serving the
// bench protocol (docs/architecture.md), as cmd/gwbench/prod.sh's "php"
// contender: what the production shape replaces, measured with the same load.
// Not part of our code or tests; it needs the two libraries, which this
// repository does not carry:
//   PHP_GW=DIR, where DIR/vendor/autoload.php exists (composer require
//   workerman/gateway-worker), or DIR/workerman and DIR/gateway-worker hold
//   checkouts of walkor/workerman (a v4 tag: 5 also needs workerman/coroutine)
//   and walkor/GatewayWorker.
// WS_ADDR (127.0.0.1:7390), REGISTER_PORT (1236), START_PORT (2900) and
// WORKERS (2 BusinessWorker processes, GatewayWorker's own demo count) set it up.
// Run: php start.php start   (foreground; Ctrl-C or SIGINT to the master stops it)

declare(strict_types=1);

use GatewayWorker\BusinessWorker;
use GatewayWorker\Gateway;
use GatewayWorker\Register;
use Workerman\Worker;

$dir = getenv('PHP_GW') ?: '';
if ($dir !== '' && is_file("$dir/vendor/autoload.php")) {
    require "$dir/vendor/autoload.php";
} elseif ($dir !== '' && is_file("$dir/workerman/Worker.php") && is_dir("$dir/gateway-worker/src")) {
    // workerman 4 (5 needs workerman/coroutine as well: use composer then)
    $roots = ['Workerman\\' => "$dir/workerman/", 'GatewayWorker\\' => "$dir/gateway-worker/src/"];
    spl_autoload_register(static function (string $class) use ($roots): void {
        foreach ($roots as $prefix => $root) {
            if (str_starts_with($class, $prefix)) {
                $file = $root . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
                if (is_file($file)) {
                    require $file;
                }
                return;
            }
        }
    });
} else {
    fwrite(STDERR, "start.php: set PHP_GW to a directory with vendor/autoload.php, or with workerman/ (v4) and gateway-worker/ checkouts\n");
    exit(2);
}
require __DIR__ . '/Events.php';

$register = (int) (getenv('REGISTER_PORT') ?: 1236);
$registerAddress = "127.0.0.1:$register";
Worker::$logFile = getenv('LOG_FILE') ?: '/dev/null';
Worker::$pidFile = sys_get_temp_dir() . "/gwbench-php-gatewayworker-$register.pid";

new Register("text://$registerAddress");

$gateway = new Gateway('websocket://' . (getenv('WS_ADDR') ?: '127.0.0.1:7390'));
$gateway->name = 'BenchGateway';
$gateway->count = 1; // one gateway process, as prod.sh runs ours
$gateway->lanIp = '127.0.0.1';
$gateway->startPort = (int) (getenv('START_PORT') ?: 2900);
$gateway->registerAddress = $registerAddress;

$worker = new BusinessWorker();
$worker->name = 'BenchBusinessWorker';
$worker->count = (int) (getenv('WORKERS') ?: 2);
$worker->registerAddress = $registerAddress;
$worker->eventHandler = 'Events';

Worker::runAll();
