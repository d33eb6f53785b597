<?php

// Test scripts run from a checkout, with or without `composer dump-autoload`.
declare(strict_types=1);

error_reporting(E_ALL);
set_error_handler(static function (int $no, string $msg, string $file, int $line): bool {
    if (!(error_reporting() & $no)) {
        return false; // silenced with @, as the client does around socket calls
    }
    throw new ErrorException($msg, 0, $no, $file, $line);
});

$autoload = __DIR__ . '/../vendor/autoload.php';
if (is_file($autoload)) {
    require $autoload;
} else {
    spl_autoload_register(static function (string $class): void {
        foreach (['GatewayWorker\\' => 'GatewayWorker/', 'GatewayClient\\' => 'GatewayClient/', 'Workerman\\' => 'Workerman/'] as $prefix => $dir) {
            if (str_starts_with($class, $prefix)) {
                $file = __DIR__ . '/../src/' . $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
                if (is_file($file)) {
                    require $file;
                }
            }
        }
    });
}

$GLOBALS['failures'] = 0;

/** Compares with ===, map order aside, and reports a mismatch without stopping. */
function check(string $name, mixed $got, mixed $want): void
{
    $norm = static function (mixed $v) use (&$norm): mixed {
        if (is_array($v) && !array_is_list($v)) {
            ksort($v, SORT_STRING);
        }
        return is_array($v) ? array_map($norm, $v) : $v;
    };
    if ($norm($got) !== $norm($want)) {
        $GLOBALS['failures']++;
        fwrite(STDERR, "FAIL $name:\n  got  " . var_export($got, true) . "\n  want " . var_export($want, true) . "\n");
    }
}

/** The exception class $f throws (with its message), or "none". */
function thrown(callable $f): string
{
    try {
        $f();
    } catch (Throwable $e) {
        return get_class($e) . ': ' . $e->getMessage();
    }
    return 'none';
}

/** Tells the Go test we reached $tag and waits for its go-ahead. */
function waitFor(string $tag): string
{
    echo "WAIT $tag\n";
    return trim((string)fgets(STDIN));
}

function done(): void
{
    if ($GLOBALS['failures'] > 0) {
        fwrite(STDERR, "{$GLOBALS['failures']} checks failed\n");
        exit(1);
    }
    echo "PASS\n";
}
