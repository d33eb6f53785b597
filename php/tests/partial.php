<?php

// Queries when a gateway vanished: php/phptest starts gateways "alive"
// (no clients) and "doomed" (one client), lets this script discover both,
// then cuts doomed off NATS without a goodbye.
declare(strict_types=1);

require __DIR__ . '/bootstrap.php';

use GatewayClient\Gateway;
use GatewayWorker\Nats\Api;
use GatewayWorker\Nats\Connection;
use GatewayWorker\Nats\PartialAnswerException;

Gateway::$natsUrls = getenv('NATS_URL');
Gateway::$queryTimeout = 0.3;
$strict = new Api(new Connection(['servers' => getenv('NATS_URL')]), 'gw', 2.0, 0.3, true);
check('discovery by ping', $strict->liveGateways(), ['alive', 'doomed']);
check('count before', Gateway::getAllClientIdCount(), 1);
check('nobody missing', Gateway::api()->missingGateways(), []);
waitFor('discovered'); // the test cuts doomed off

$warnings = [];
set_error_handler(static function (int $no, string $msg) use (&$warnings): bool {
    $warnings[] = $msg;
    return true;
}, E_USER_WARNING);
$t = microtime(true);
check('partial count: what alive said', Gateway::getAllClientIdCount(), 0);
check('bounded by $queryTimeout', microtime(true) - $t < 2.0, true);
check('missing named', Gateway::api()->missingGateways(), ['doomed']);
check('warning', $warnings, ['Gateway: getClientIdCountByGroup: partial answer, gateways doomed did not answer']);
Gateway::$persistentConnection = false; // the warning outlives the connection
check('partial list, not persistent', Gateway::getAllClientIdList(), []);
check('warned again', count($warnings), 2);
restore_error_handler();
try {
    $strict->count('client_count');
    check('strict throws', 'no exception', PartialAnswerException::class);
} catch (PartialAnswerException $e) {
    check('strict: missing', $e->missing, ['doomed']);
    check('strict: the parts that came', array_column($e->parts, 'g'), ['alive']);
    check('strict: message', $e->getMessage(), 'gatewayworker: partial answer: gateways doomed did not answer');
}
done();
