<?php

// The NATS client against real servers that php/phptest starts: one case per run.
declare(strict_types=1);

require __DIR__ . '/bootstrap.php';

use GatewayWorker\Nats\ConnectionException;
use GatewayWorker\Nats\Connection;
use GatewayWorker\Nats\Message;
use GatewayWorker\Nats\NoRespondersException;
use GatewayWorker\Nats\PayloadTooLargeException;
use GatewayWorker\Nats\TimeoutException;

$url = getenv('NATS_URL');

/** A responder on the same connection: it answers while request() waits. */
function echoRoundTrip(Connection $nc, string $name): void
{
    $sid = $nc->subscribe("svc.$name", static function (Message $m) use ($nc): void {
        $nc->publish($m->reply, 'echo:' . $m->data . ':' . ($m->headers['X-Test'][0] ?? ''));
    }, 'q1');
    check("$name request", $nc->request("svc.$name", 'hi', 2.0)->data, 'echo:hi:');
    $got = null;
    $nc->subscribe("hdr.$name", static function (Message $m) use (&$got): void {
        $got = $m;
    });
    $nc->publish("hdr.$name", "\x00\xffbody", null, ['X-Test' => 'v1']);
    $nc->flush();
    $nc->process(0.2);
    check("$name HPUB data", $got?->data, "\x00\xffbody");
    check("$name HPUB header", $got?->headers, ['X-Test' => ['v1']]);
    $nc->unsubscribe($sid);
}

switch ($argv[1]) {
    case 'plain':
        $nc = new Connection(['servers' => $url]);
        echoRoundTrip($nc, 'plain');
        check('no responders', thrown(fn () => $nc->request('nobody.here', 'x', 2.0)),
            NoRespondersException::class . ': nats: no responders on nobody.here');
        check('max payload', $nc->maxPayload(), 4096);
        check('too large', thrown(fn () => $nc->publish('big', str_repeat('x', 5000))),
            PayloadTooLargeException::class . ": nats: message to big is 5000 bytes, over the server's max_payload of 4096");
        check('timeout', str_starts_with(thrown(function () use ($nc): void {
            $nc->subscribe('silent', static function (): void {
            });
            $nc->request('silent', 'x', 0.2);
        }), TimeoutException::class), true);
        check('bad subject', str_contains(thrown(fn () => $nc->publish('a b', 'x')), 'invalid subject'), true);
        // Queue groups: two members, each message to one of them.
        $a = $b = 0;
        $nc->subscribe('work', function () use (&$a): void { $a++; }, 'workers');
        $nc->subscribe('work', function () use (&$b): void { $b++; }, 'workers');
        for ($i = 0; $i < 20; $i++) {
            $nc->publish('work', (string)$i);
        }
        $nc->flush();
        $nc->process(0.2);
        check('queue group delivers each once', $a + $b, 20);
        $nc->close();
        check('refused', str_contains(thrown(fn () => (new Connection(['servers' => 'nats://127.0.0.1:1', 'connect_timeout' => 0.5]))->connect()),
            'no server accepted the connection'), true);
        break;

    case 'token':
        echoRoundTrip(new Connection(['servers' => $url, 'token' => getenv('NATS_TOKEN')]), 'token');
        $u = parse_url($url);
        echoRoundTrip(new Connection(['servers' => "nats://" . getenv('NATS_TOKEN') . "@{$u['host']}:{$u['port']}"]), 'token-url');
        $e = thrown(fn () => (new Connection(['servers' => $url, 'token' => 'wrong']))->connect());
        check('wrong token', str_starts_with($e, ConnectionException::class) && stripos($e, 'authorization violation') !== false, true);
        break;

    case 'userpass':
        echoRoundTrip(new Connection(['servers' => $url, 'user' => getenv('NATS_USER'), 'pass' => getenv('NATS_PASS')]), 'userpass');
        $u = parse_url($url);
        echoRoundTrip(new Connection(['servers' => 'nats://' . getenv('NATS_USER') . ':' . rawurlencode(getenv('NATS_PASS')) . "@{$u['host']}:{$u['port']}"]), 'userpass-url');
        $e = thrown(fn () => (new Connection(['servers' => $url, 'user' => getenv('NATS_USER'), 'pass' => 'nope']))->connect());
        check('wrong password', stripos($e, 'authorization violation') !== false, true);
        break;

    case 'tls':
        echoRoundTrip(new Connection(['servers' => $url, 'tls' => ['cafile' => getenv('NATS_CA')]]), 'tls');
        $e = thrown(fn () => (new Connection(['servers' => $url, 'tls' => true]))->connect());
        check('unknown CA refused', str_starts_with($e, ConnectionException::class) && str_contains($e, 'TLS handshake'), true);
        break;

    case 'nkey':
        echoRoundTrip(new Connection(['servers' => $url, 'nkey_seed' => getenv('NATS_SEED')]), 'nkey');
        $e = thrown(fn () => (new Connection(['servers' => $url]))->connect());
        check('no nkey refused', stripos($e, 'authorization violation') !== false, true);
        break;

    case 'inbox':
        // A user with the api role's permissions can read replies only under its inbox prefix.
        $nc = new Connection(['servers' => $url, 'user' => 'api', 'pass' => 'api', 'inbox_prefix' => getenv('NATS_INBOX')]);
        check('reply under the role inbox', $nc->request('gw.q.ping', '', 2.0)->data, 'pong');
        $bad = new Connection(['servers' => $url, 'user' => 'api', 'pass' => 'api']);
        check('reply under _INBOX refused', str_starts_with(thrown(fn () => $bad->request('gw.q.ping', '', 0.5)), TimeoutException::class), true);
        check('the refusal is reported', stripos((string)$bad->lastError(), 'permissions violation') !== false, true);
        break;

    case 'reconnect':
        $nc = new Connection(['servers' => [$url, getenv('NATS_URL2')]]);
        $notes = [];
        $nc->subscribe('note', function (Message $m) use (&$notes): void {
            $notes[] = $m->data;
        });
        $nc->flush();
        check('first server', $nc->connectedUrl(), $url);
        waitFor('connected'); // the test stops the first server
        check('request after failover', $nc->request('svc.second', 'hi', 3.0)->data, 'second:hi');
        check('moved to the second server', $nc->connectedUrl(), getenv('NATS_URL2'));
        $deadline = microtime(true) + 3;
        while ($notes === [] && microtime(true) < $deadline) {
            $nc->process(0.1);
        }
        check('subscriptions renewed', $notes, ['after']);
        break;

    case 'ping':
        // The server PINGs every 100 ms and drops a client after 3 unanswered.
        $nc = new Connection(['servers' => $url]);
        $nc->flush();
        $nc->process(1.0); // waiting answers the server's PINGs
        $nc->publish('still', 'here');
        $nc->flush();
        check('PINGs answered while waiting: same connection', $nc->reconnects(), 0);
        usleep(1000000); // not reading: the server gives up on us
        $got = null;
        $nc->subscribe('svc.ping', static function (Message $m) use ($nc): void {
            $nc->publish($m->reply, 'pong');
        });
        check('a dropped connection is replaced before the next write', $nc->request('svc.ping', '', 2.0)->data, 'pong');
        check('one reconnect', $nc->reconnects(), 1);
        // Stale while waiting: the server's "-ERR 'Stale Connection'" is read, and the wait goes on on a new connection.
        $ponged = new Connection(['servers' => $url]);
        $ponged->subscribe('svc.late', static function (Message $m) use ($ponged): void {
            $ponged->publish($m->reply, 'late');
        });
        $ponged->flush();
        usleep(1000000);
        $ponged->process(0.5);
        check('stale while idle, then waiting: reconnected', $ponged->reconnects(), 1);
        check('and usable', $ponged->request('svc.late', '', 2.0)->data, 'late');
        break;
}
done();
