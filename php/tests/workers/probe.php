<?php

declare(strict_types=1);

use GatewayWorker\Lib\Gateway;

/**
 * The PHP twin of `gatewayworker worker --app probe` (cmd/gatewayworker/probe.go):
 * a "b" line when a handler starts and an "e" line when it ends, appended
 * to GATEWAYWORKER_PROBE_LOG, in the same format, so that the integration
 * tests count what PHP workers did as they count Go workers. A message
 * "block:<path>" blocks until that file exists (a handler whose end the test
 * chooses, at most 60 s); others sleep PROBE_DELAY_MS milliseconds. Every message is echoed to its sender.
 */
class Events
{
    private static function record(string $kind, string $detail, ?callable $run = null): void
    {
        $log = (string)getenv('GATEWAYWORKER_PROBE_LOG');
        $id = $GLOBALS['probe_client'];
        file_put_contents($log, "b $id $kind " . json_encode($detail, JSON_UNESCAPED_SLASHES) . "\n", FILE_APPEND);
        if ($run !== null) {
            $run();
        }
        file_put_contents($log, "e $id $kind " . json_encode($detail, JSON_UNESCAPED_SLASHES) . "\n", FILE_APPEND);
    }

    public static function onConnect($client_id)
    {
        $GLOBALS['probe_client'] = $client_id;
        self::record('connect', '');
    }

    public static function onMessage($client_id, $message)
    {
        $GLOBALS['probe_client'] = $client_id;
        self::record('message', $message, static function () use ($message): void {
            if (str_starts_with($message, 'block:')) {
                for ($end = time() + 60; !file_exists(substr($message, 6)) && time() < $end;) {
                    usleep(50000);
                }
            } elseif (($ms = (int)getenv('PROBE_DELAY_MS')) > 0) {
                usleep($ms * 1000);
            }
            Gateway::sendToCurrentClient($message);
        });
    }

    public static function onClose($client_id)
    {
        $GLOBALS['probe_client'] = $client_id;
        self::record('close', '');
    }
}
