<?php

// The PHP encoder against docs/protocol.md: the hex dumps of the commands,
// queries and acks, the session example, and the token table, byte for byte.
declare(strict_types=1);

require __DIR__ . '/bootstrap.php';

use GatewayWorker\Nats\Api;
use GatewayWorker\Nats\Envelope;

$doc = file_get_contents(__DIR__ . '/../../docs/protocol.md');
preg_match_all('/<!-- envelope: ([\w-]+) -->\s*```hex\n(.*?)```/s', $doc, $m, PREG_SET_ORDER);
$dumps = [];
foreach ($m as [, $name, $hex]) {
    $dumps[$name] = hex2bin(preg_replace('/\s+/', '', $hex));
}
$id = 'gw1-mihyrchs-1';
$session = ['room' => 1, 'name' => 'Ann']; // encoded sorted by key
$mine = [
    'command-send-client' => Envelope::command(Envelope::OP_SEND, [$id], '', 'hello'),
    'command-join-group' => Envelope::command(Envelope::OP_JOIN_GROUP, [$id], '房间'),
    'command-set-session' => Envelope::command(Envelope::OP_SET_SESSION, [$id], '', Envelope::encodeSession($session)),
    'command-send-group' => Envelope::command(Envelope::OP_SEND, [], '', 'hi room', ['gw1-mihyrchs-2']),
    'command-send-binary' => Envelope::command(Envelope::OP_SEND, [$id], '', "\x82\xa1", [], Envelope::FRAME_BINARY),
    'query-group-count' => Envelope::command(0, [], '房间'),
    'session' => Envelope::encodeSession($session),
    'ack-working' => Envelope::ack($id, 2, Envelope::ACK_WORKING),
    'ack-done-session' => Envelope::ack($id, 2, Envelope::ACK_DONE, true, Envelope::encodeSession($session)),
    'ack-done-sticky' => Envelope::ack($id, 3, Envelope::ACK_DONE, false, '', '0a1b2c3d4e5f'),
];
foreach ($mine as $name => $bytes) {
    check("envelope $name", bin2hex($bytes), bin2hex($dumps[$name] ?? 'missing from docs/protocol.md'));
}
// Decoding what the Go side encodes.
$r = Envelope::reply($dumps['reply-items-more']);
check('reply-items-more', [$r['g'], $r['n'], $r['i'], $r['more']], ['gw1', 2, ['gw1-mihyrchs-1', 'gw1-mihyrchs-2'], true]);
$r = Envelope::reply($dumps['reply-not-found']);
check('reply-not-found', [$r['e'], $r['g']], ['not_found', 'gw1']);
check('session decodes', Envelope::decodeSession($dumps['session']), ['name' => 'Ann', 'room' => 1]);
// The batches a worker decodes, and the reaper's seq 2^64-2, which ext-msgpack gives as a string.
$b = Envelope::decode($dumps['event-batch-message']);
check('event-batch-message', [$b['c'], $b['q'], $b['u'], Envelope::decodeSession($b['s']), $b['e']],
    [$id, 2, 'ann', $session, [['k' => 3, 'b' => 'hi'], ['k' => 4, 'r' => 1]]]);
check('event-batch-connect websocket', Envelope::decode($dumps['event-batch-connect'])['e'][1]['w'], ['p' => '/', 'q' => 't=1']);
$reap = Envelope::ack($id, GatewayWorker\BusinessWorker::REAP_SEQ, Envelope::ACK_DONE);
check('reaper seq', bin2hex(substr($reap, 19, 11)), 'a171cffffffffffffffffe');
check('reaper seq round trip', Envelope::decode($reap)['q'], GatewayWorker\BusinessWorker::REAP_SEQ);
check('ack seq over uint64', str_contains(thrown(fn () => Envelope::ack($id, '18446744073709551616', 1)), 'over the uint64 range'), true);
check('wrong version', str_contains(thrown(fn () => Envelope::decode("\x02\x80")), 'version 2'), true);

preg_match('/<!-- table: tokens -->\n(.*?)\n\n/s', $doc, $t);
$rows = 0;
foreach (explode("\n", $t[1]) as $line) {
    if (preg_match('/^\| `"([^`]*)"` \| `([^`]*)` \|/u', $line, $row)) {
        check("token $row[1]", Api::token($row[1]), $row[2]);
        $rows++;
    }
}
check('token rows read', $rows, 7);
check('inbox prefix', Api::inboxPrefix('tenant1.gw', 'api'), '_INBOX.~dGVuYW50MS5ndw.api');
check('gateway of a client id', [Api::gatewayOf($id), Api::gatewayOf('gw1-x'), Api::gatewayOf('a.b-1-1')], ['gw1', null, null]);

// Integers in their smallest form, as the Go encoder writes them.
foreach ([[0, '00'], [127, '7f'], [128, 'cc80'], [65536, 'ce00010000'], [-1, 'ff'], [-33, 'd0df'], [PHP_INT_MAX, 'cf7fffffffffffffff'], [PHP_INT_MIN, 'd38000000000000000']] as [$i, $hex]) {
    check("int $i", bin2hex(Envelope::value($i)), $hex);
    check("int $i round trip", msgpack_unpack(Envelope::value($i)), $i);
}
check('nested values round trip', msgpack_unpack(Envelope::value(['a' => [1, 2.5, 'x', null, false], '7' => ['k' => 'v']])),
    ['a' => [1, 2.5, 'x', null, false], 7 => ['k' => 'v']]);
check('long strings and lists', msgpack_unpack(Envelope::value([str_repeat('s', 70000), range(1, 20)])), [str_repeat('s', 70000), range(1, 20)]);
done();
