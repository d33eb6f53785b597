<?php

// Recoverable sends and Gateway::getHistory against a real nats-server
// with JetStream and the history stream (php/phptest/history_test.go
// creates it and checks what NATS got).
//   php history.php            sends, reads, waits while the test drops the stream's first 3 messages, reads again
//   php history.php unavailable  no JetStream, or no stream: HistoryUnavailableException
//   php history.php retry       one recoverable send through a proxy that holds the first acknowledgement
//   php history.php gateway     recoverable sends to a client of a real gateway, then while it is away
//   php history.php roles       a recoverable send and history reads under the api role's permissions
declare(strict_types=1);

require __DIR__ . '/bootstrap.php';

use GatewayClient\Gateway;

Gateway::$natsUrls = [getenv('NATS_URL')];
$mode = $argv[1] ?? 'main';

if ($mode === 'unavailable') {
    check('recoverable send', thrown(static fn () => Gateway::sendToUid('ann', 'r', recoverable: true)),
        'GatewayWorker\Nats\HistoryUnavailableException: gatewayworker: no JetStream stream stores gw.h.u.ann: history is off, or the NATS server has no JetStream');
    check('history', thrown(static fn () => Gateway::getHistory('uid', 'ann')), getenv('WANT_HISTORY_ERROR'));
    check('plain send', thrown(static fn () => Gateway::sendToUid('ann', 'p')), 'none');
    Gateway::$recoverable = ['g:*'];
    check('recoverable by pattern', explode(':', thrown(static fn () => Gateway::sendToGroup('room', 'r')))[0], 'GatewayWorker\Nats\HistoryUnavailableException');
    done();
    exit;
}

if ($mode === 'gateway') {
    Gateway::sendToUid('ann', 'r1', recoverable: true);
    Gateway::sendToGroup('room-1', 'r2', recoverable: true);
    waitFor('away');
    Gateway::sendToUid('ann', 'r3', recoverable: true);
    Gateway::sendToGroup('room-1', 'r4', recoverable: true);
    done();
    exit;
}

if ($mode === 'roles') {
    // Under the api role's permissions (NATS_USER, NATS_PASS): the history
    // subjects and the role's inbox for the answers.
    Gateway::$natsUser = getenv('NATS_USER');
    Gateway::$natsPassword = getenv('NATS_PASS');
    Gateway::sendToUid('ann', 'r1', recoverable: true);
    Gateway::sendToGroup('room-1', 'r2', recoverable: true);
    $epoch = getenv('EPOCH');
    check('uid history', Gateway::getHistory('uid', 'ann'), ['messages' => [['pos' => "$epoch:1", 'data' => 'r1', 'frame' => 'default']], 'complete' => true]);
    check('group history', Gateway::getHistory('group', 'room-1', "$epoch:1"), ['messages' => [['pos' => "$epoch:2", 'data' => 'r2', 'frame' => 'default']], 'complete' => true]);
    done();
    exit;
}

if ($mode === 'retry') {
    Gateway::$requestTimeout = 0.5;
    check('send', thrown(static fn () => Gateway::sendToUid('ann', 'once', recoverable: true)), 'none');
    done();
    exit;
}

Gateway::$recoverable = ['u:chat-*', 'g:room-*'];
Gateway::sendToUid('ann', 'r1', recoverable: true);         // seq 1
Gateway::sendToUid(['chat-7', 'bob'], 'r2');                // seq 2 for chat-7 (pattern), plain for bob
Gateway::sendToGroup('room-1', 'r3', 'g1-aa-1');            // seq 3 (pattern), with an exclusion
Gateway::sendToGroup('lobby', 'p2');                        // plain
Gateway::sendToGroup('room-1', "r4\xff", recoverable: true); // seq 4, not UTF-8
Gateway::sendToUid('chat/x', 'p3');                         // * does not match /: plain
check('sendToGroup empty', Gateway::sendToGroup('', 'x', recoverable: true), false);

$epoch = getenv('EPOCH');
$msg = static fn (int $seq, string $data): array => ['pos' => "$epoch:$seq", 'data' => $data, 'frame' => 'default'];
check('uid history', Gateway::getHistory('uid', 'ann'), ['messages' => [$msg(1, 'r1')], 'complete' => true]);
check('pattern uid history', Gateway::getHistory('uid', 'chat-7'), ['messages' => [$msg(2, 'r2')], 'complete' => true]);
check('group history', Gateway::getHistory('group', 'room-1'), ['messages' => [$msg(3, 'r3'), $msg(4, "r4\xff")], 'complete' => true]);
check('since', Gateway::getHistory('group', 'room-1', "$epoch:3"), ['messages' => [$msg(4, "r4\xff")], 'complete' => true]);
check('since the last', Gateway::getHistory('group', 'room-1', "$epoch:4"), ['messages' => [], 'complete' => true]);
check('limit', Gateway::getHistory('group', 'room-1', '', 1), ['messages' => [$msg(3, 'r3')], 'complete' => true]);
check('another epoch', Gateway::getHistory('group', 'room-1', 'zz:3'), ['messages' => [], 'complete' => false]);
check('beyond the last', Gateway::getHistory('group', 'room-1', "$epoch:9"), ['messages' => [], 'complete' => false]);
check('limit 0: 100', Gateway::getHistory('group', 'room-1', '', 0), ['messages' => [$msg(3, 'r3'), $msg(4, "r4\xff")], 'complete' => true]);
check('plain sends are not history', Gateway::getHistory('uid', 'bob'), ['messages' => [], 'complete' => true]);
check('bad kind', thrown(static fn () => Gateway::getHistory('client', 'x')), 'InvalidArgumentException: gatewayworker: history kind "client" is neither uid nor group');
check('bad limit', thrown(static fn () => Gateway::getHistory('uid', 'ann', '', 1001)), 'InvalidArgumentException: gatewayworker: history limit 1001 is not between 1 and 1000');
check('negative limit', thrown(static fn () => Gateway::getHistory('uid', 'ann', '', -1)), 'InvalidArgumentException: gatewayworker: history limit -1 is not between 1 and 1000');
check('bad position', thrown(static fn () => Gateway::getHistory('uid', 'ann', '17')), 'InvalidArgumentException: gatewayworker: position "17" is not <epoch>:<seq>');
check('bad name', thrown(static fn () => Gateway::getHistory('uid', '')), 'InvalidArgumentException: gatewayworker: group or uid "" must be 1 to 256 bytes');

waitFor('sent');
// The test dropped messages 1 to 3 (as max age or max bytes would).
check('past the bound', Gateway::getHistory('group', 'room-1', "$epoch:2"), ['messages' => [], 'complete' => false]);
check('just within', Gateway::getHistory('group', 'room-1', "$epoch:3"), ['messages' => [$msg(4, "r4\xff")], 'complete' => true]);
check('from the start, trimmed', Gateway::getHistory('uid', 'ann'), ['messages' => [], 'complete' => false]);
done();
