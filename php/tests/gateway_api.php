<?php

// Every static Gateway method against real gateways, with exact return
// values: php/phptest starts two gateways (g1 with clients C0..C2, g2 with
// C3 and C4, their ids in CLIENT_IDS) and checks what the clients receive.
// argv[1] picks the class: "lib" (GatewayWorker\Lib\Gateway) or "client"
// (GatewayClient\Gateway).
declare(strict_types=1);

require __DIR__ . '/bootstrap.php';

use GatewayWorker\Lib\Context;
use GatewayWorker\Nats\NatsException;

/** @var class-string<GatewayWorker\Lib\Gateway|GatewayClient\Gateway> $G */
$G = $argv[1] === 'client' ? GatewayClient\Gateway::class : GatewayWorker\Lib\Gateway::class;
$G::$natsUrls = [getenv('NATS_URL')];
if (getenv('NATS_USER') !== false) {
    $G::$natsUser = getenv('NATS_USER');
    $G::$natsPassword = getenv('NATS_PASS');
}
[$c0, $c1, $c2, $c3, $c4] = explode(',', getenv('CLIENT_IDS'));
$gone = 'g1-zzzzzz-1'; // a client id of a running gateway, but nobody's
$noGateway = 'nogw-1-1';   // a client id of a gateway that does not run

/** Retries $f until it returns $want (for state changed by published, unanswered commands). */
function eventually(string $name, callable $f, mixed $want): void
{
    $deadline = microtime(true) + 5;
    do {
        $got = $f();
        if ($got === $want) {
            break;
        }
        usleep(20000);
    } while (microtime(true) < $deadline);
    check($name, $got, $want);
}

function ids(string ...$ids): array
{
    sort($ids, SORT_STRING);
    return array_combine($ids, $ids);
}

// Membership and sessions (answered: in effect when the call returns).
check('bindUid returns null', $G::bindUid($c0, 'ann'), null);
$G::bindUid($c1, 'bob');
$G::bindUid($c3, 'bob');
$G::bindUid($c4, 42);
check('joinGroup returns null', $G::joinGroup($c0, 'red'), null);
$G::joinGroup($c1, 'red');
$G::joinGroup($c3, 'red');
$G::joinGroup($c3, 'blue');
$G::joinGroup($c4, 'blue');
$G::joinGroup($c2, '房间');
$G::joinGroup($gone, 'red');     // a client that is gone: nothing, as in GatewayWorker
$G::joinGroup('not an id', 'red');
check('setSession returns null', $G::setSession($c0, ['name' => 'Ann', 'n' => 1, 'tags' => ['a' => 1]]), null);
check('updateSession returns null', $G::updateSession($c0, ['n' => 2]), null);
$G::updateSession($c0, ['tags' => ['b' => 2]]); // array_replace_recursive: tags gains b
$G::setSession($c1, ['x' => 1.5, 'list' => [1, 'two', null, true]]);
check('bad name', str_contains(thrown(fn () => $G::joinGroup($c0, str_repeat('x', 300))), 'must be 1 to 256 bytes'), true);

// Queries.
check('getAllClientIdCount', $G::getAllClientIdCount(), 5);
check('getAllClientCount', $G::getAllClientCount(), 5);
check('getClientIdCountByGroup red', $G::getClientIdCountByGroup('red'), 3);
check('getClientCountByGroup none', $G::getClientCountByGroup(''), 5);
check('getClientCountByGroup empty group', $G::getClientCountByGroup('nobody-here'), 0);
check('getAllClientIdList', $G::getAllClientIdList(), ids($c0, $c1, $c2, $c3, $c4));
check('getClientIdListByGroup red', $G::getClientIdListByGroup('red'), ids($c0, $c1, $c3));
check('getClientIdListByGroup [red, blue]', $G::getClientIdListByGroup(['red', 'blue']), ids($c0, $c1, $c3, $c4));
check('getClientIdListByGroup empty', $G::getClientIdListByGroup(''), []);
$bob = [$c1, $c3];
sort($bob);
check('getClientIdByUid bob', $G::getClientIdByUid('bob'), $bob);
check('getClientIdByUid 42', $G::getClientIdByUid(42), [$c4]);
check('getClientIdByUid nobody', $G::getClientIdByUid('nobody'), []);
check('getUidListByGroup red', $G::getUidListByGroup('red'), ['ann' => 'ann', 'bob' => 'bob']);
check('getUidListByGroup [red, blue]', $G::getUidListByGroup(['red', 'blue']), ['42' => '42', 'ann' => 'ann', 'bob' => 'bob']);
check('getUidListByGroup empty', $G::getUidListByGroup(''), []);
check('getUidCountByGroup red', $G::getUidCountByGroup('red'), 2);
check('getUidCountByGroup empty', $G::getUidCountByGroup(''), 0);
check('getAllUidList', $G::getAllUidList(), ['42' => '42', 'ann' => 'ann', 'bob' => 'bob']);
check('getAllUidCount', $G::getAllUidCount(), 3);
check('getUidByClientId', $G::getUidByClientId($c4), '42');
check('getUidByClientId no uid', $G::getUidByClientId($c2), null);
check('getUidByClientId gone', $G::getUidByClientId($gone), null);
check('isUidOnline bob', $G::isUidOnline('bob'), 1);
check('isUidOnline nobody', $G::isUidOnline('nobody'), 0);
check('isOnline', $G::isOnline($c0), 1);
check('isOnline gone', $G::isOnline($gone), 0);
check('isOnline no gateway', $G::isOnline($noGateway), 0);
check('isOnline not an id', $G::isOnline('not an id'), 0);
$annSession = ['n' => 2, 'name' => 'Ann', 'tags' => ['a' => 1, 'b' => 2]];
$c1Session = ['list' => [1, 'two', null, true], 'x' => 1.5];
check('getSession', $G::getSession($c0), $annSession);
check('getSession float and list', $G::getSession($c1), $c1Session);
check('getSession empty', $G::getSession($c2), []);
check('getSession gone', $G::getSession($gone), null);
check('getSession no gateway', $G::getSession($noGateway), null);
check('getSession not an id', $G::getSession('not an id'), false);
check('getAllClientSessions', $G::getAllClientSessions(),
    [$c0 => $annSession, $c1 => $c1Session, $c2 => [], $c3 => [], $c4 => []]);
check('getAllClientSessions of a group', $G::getAllClientSessions('blue'), [$c3 => [], $c4 => []]);
check('getClientSessionsByGroup red', $G::getClientSessionsByGroup('red'), [$c0 => $annSession, $c1 => $c1Session, $c3 => []]);
check('getClientSessionsByGroup empty', $G::getClientSessionsByGroup(''), []);
check('getAllGroupIdList', $G::getAllGroupIdList(), ['blue' => 'blue', 'red' => 'red', '房间' => '房间']);
check('getAllGroupClientIdList', $G::getAllGroupClientIdList(),
    ['blue' => ids($c3, $c4), 'red' => ids($c0, $c1, $c3), '房间' => ids($c2)]);
check('getAllGroupClientIdCount', $G::getAllGroupClientIdCount(), ['blue' => 2, 'red' => 3, '房间' => 1]);
check('getAllGroupUidList', $G::getAllGroupUidList(),
    ['blue' => ['42' => '42', 'bob' => 'bob'], 'red' => ['ann' => 'ann', 'bob' => 'bob']]);
check('getAllGroupUidCount', $G::getAllGroupUidCount(), ['blue' => 2, 'red' => 2]);
// The current client's session is $_SESSION, as the worker holds it.
Context::$client_id = $c2;
$_SESSION = ['mine' => true];
check('getAllClientSessions current', $G::getAllClientSessions('房间'), [$c2 => ['mine' => true]]);
$G::updateSession($c2, ['more' => ['x' => 1]]);
check('updateSession current', [$_SESSION, $G::getSession($c2)], [['mine' => true, 'more' => ['x' => 1]], ['mine' => true, 'more' => ['x' => 1]]]);
Context::clear();

// Sends: the test reads what each client receives. c0 takes binary frames from now on.
check('setWebSocketType', $G::setWebSocketType($c0, "\x82"), true);
check('setWebSocketType gone', $G::setWebSocketType($gone, 'binary'), false);
check('setWebSocketType bad', str_contains(thrown(fn () => $G::setWebSocketType($c0, 'blob')), 'must be text, binary or default'), true);
check('sendToClient', $G::sendToClient($c0, 'to-c0'), true);
check('sendToClient gone', $G::sendToClient($gone, 'x'), false);
check('sendToClient no gateway', $G::sendToClient($noGateway, 'x'), false);
check('sendToClient not an id', $G::sendToClient('not an id', 'x'), false);
check('sendToClient binary', $G::sendToClient($c1, "\xff\x00bin"), true);
check('sendToUid', $G::sendToUid('bob', 'to-bob'), null);
$G::sendToUid(['ann', 42], 'to-ann-42');
check('sendToGroup', $G::sendToGroup('red', 'to-red', $c1), null);
$G::sendToGroup(['blue', '房间'], 'to-blue-room', [$c4]);
check('sendToGroup empty', $G::sendToGroup('', 'x'), false);
check('sendToAll', $G::sendToAll('to-all', null, $c2), null);
$G::sendToAll('to-list', [$c0, $c4, $c2, 'not an id'], [$c2]);
$G::sendToAll('to-nobody', []);
Context::$client_id = $c2;
check('sendToCurrentClient', $G::sendToCurrentClient('to-current'), true);
check('sendToClient current', $G::sendToClient($c2, 'to-current-2'), true);
Context::clear();
check('sendToCurrentClient without one', thrown(fn () => $G::sendToCurrentClient('x')),
    NatsException::class . ': Gateway::sendToCurrentClient needs a current client: call it from a worker\'s event handler (Context::$client_id is not set)');
waitFor('sent'); // the test checks every client's messages

// Membership changes and closes.
$G::leaveGroup($c1, 'red');
check('leaveGroup', $G::getClientIdListByGroup('red'), ids($c0, $c3));
$G::unbindUid($c3, 'bob');
check('unbindUid', $G::getClientIdByUid('bob'), [$c1]);
$G::unbindUid($c1, 'ann'); // bound to another uid: nothing
check('unbindUid other', $G::getClientIdByUid('bob'), [$c1]);
check('ungroup', $G::ungroup('blue'), null);
check('ungroup empty', $G::ungroup(''), false);
eventually('ungroup done', fn () => $G::getAllGroupIdList(), ['red' => 'red', '房间' => '房间']);
check('closeClient', $G::closeClient($c4, 'bye'), true);
check('closeClient gone', $G::closeClient($gone), false);
check('destoryClient', $G::destoryClient($c1), true);
check('destoryClient again', $G::destoryClient($c1), false);
check('destoryClient not an id', $G::destoryClient('not an id'), false);
Context::$client_id = $c2;
check('closeCurrentClient', $G::closeCurrentClient('bye-current'), true);
Context::$client_id = $c3;
check('destoryCurrentClient', $G::destoryCurrentClient(), true);
Context::clear();
check('closeCurrentClient without one', str_contains(thrown(fn () => $G::closeCurrentClient()), 'needs a current client'), true);
check('destoryCurrentClient without one', str_contains(thrown(fn () => $G::destoryCurrentClient()), 'needs a current client'), true);
eventually('closed clients are gone', fn () => $G::getAllClientIdList(), ids($c0));
check('count after closes', $G::getAllClientIdCount(), 1);
done();
