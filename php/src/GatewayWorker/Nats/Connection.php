<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/**
 * A small, blocking NATS client: what a PHP process needs to push to and
 * query gatewayworker gateways. Nothing runs in the background: messages
 * are read while a call waits (request, gather, flush, process), and
 * server PINGs are answered then and before every write.
 *
 * Options (all optional):
 * - servers: a URL or a list ("nats://host:4222", "tls://host:4222",
 *   "nats://user:pass@host", "nats://token@host"); default nats://127.0.0.1:4222.
 *   A connection that breaks moves to the next URL of the list, then round.
 * - token, user, pass: credentials (those in a URL win for that URL).
 * - nkey_seed: an nkey seed ("SU..."), signed with ext-sodium.
 * - tls: true, or the "ssl" stream context options (cafile, local_cert,
 *   local_pk, verify_peer, peer_name...). tls:// URLs and servers that
 *   require TLS turn it on as well.
 * - name: the connection's name in the server's monitoring; default "gatewayworker-php".
 * - inbox_prefix: where replies come; default "_INBOX". Under role
 *   permissions use the role's prefix ("_INBOX.gw.api", see docs/protocol.md).
 * - connect_timeout: seconds per server; default 2.
 * - timeout: seconds a flush waits for the server; default 2.
 * - reconnect_rounds: how many times a lost connection tries the whole
 *   list before giving up; default 3, with reconnect_wait (0.25 s) between rounds.
 */
final class Connection
{
    public const DEFAULT_URL = 'nats://127.0.0.1:4222';
    public const VERSION = '0.1.0';

    /** @var list<string> */
    private array $servers;
    private array $opts;
    private int $current = -1;
    /** @var resource|null */
    private $sock = null;
    private string $buf = '';
    private int $pos = 0;
    private array $info = [];
    private int $nextSid = 0;
    /** @var array<int, array{0: string, 1: ?string, 2: callable}> sid => [subject, queue, callback] */
    private array $subs = [];
    private string $respPrefix;
    private ?int $respSid = null;
    private int $respSeq = 0;
    /** @var array<string, list<Message>> replies waiting for their caller, by inbox token */
    private array $responses = [];
    private int $pongs = 0;
    private bool $dirty = false;
    private bool $parsing = false;
    private ?string $lastError = null;
    private int $reconnects = 0;
    private bool $closing = false;

    public function __construct(array $options = [])
    {
        $servers = $options['servers'] ?? self::DEFAULT_URL;
        $this->servers = array_values(is_array($servers) ? $servers : [$servers]);
        if ($this->servers === []) {
            throw new ConnectionException('nats: no server URL given');
        }
        $this->opts = $options + [
            'token' => null, 'user' => null, 'pass' => null, 'nkey_seed' => null, 'tls' => false,
            'name' => 'gatewayworker-php', 'inbox_prefix' => '_INBOX', 'connect_timeout' => 2.0,
            'timeout' => 2.0, 'reconnect_rounds' => 3, 'reconnect_wait' => 0.25,
        ];
        $this->respPrefix = $this->opts['inbox_prefix'] . '.' . bin2hex(random_bytes(8));
    }

    public function __destruct()
    {
        $this->close();
    }

    /** Connects to the first server of the list that accepts us. Other calls connect when needed. */
    public function connect(): void
    {
        if ($this->sock === null) {
            $this->dial(1);
        }
    }

    public function isConnected(): bool
    {
        return $this->sock !== null;
    }

    /** The URL of the server we are connected to. */
    public function connectedUrl(): ?string
    {
        return $this->sock === null ? null : $this->servers[$this->current];
    }

    /** The largest message the server takes, in bytes (headers included). */
    public function maxPayload(): int
    {
        $this->connect();
        return (int)($this->info['max_payload'] ?? 1048576);
    }

    /** How many times a lost connection was replaced by a new one. */
    public function reconnects(): int
    {
        return $this->reconnects;
    }

    /** The last -ERR the server sent that did not end the connection (a permissions violation). */
    public function lastError(): ?string
    {
        return $this->lastError;
    }

    /**
     * Publishes data to subject. With headers, it goes as HPUB.
     *
     * @param array<string, string|list<string>> $headers
     */
    public function publish(string $subject, string $data, ?string $reply = null, array $headers = []): void
    {
        self::checkSubject($subject);
        $hdr = '';
        if ($headers !== []) {
            $hdr = "NATS/1.0\r\n";
            foreach ($headers as $k => $vs) {
                foreach ((array)$vs as $v) {
                    $hdr .= "$k: $v\r\n";
                }
            }
            $hdr .= "\r\n";
        }
        $size = strlen($hdr) + strlen($data);
        if ($size > $this->maxPayload()) {
            throw new PayloadTooLargeException(sprintf('nats: message to %s is %d bytes, over the server\'s max_payload of %d', $subject, $size, $this->maxPayload()));
        }
        $r = $reply === null ? '' : " $reply";
        $this->send($hdr === ''
            ? "PUB $subject$r " . strlen($data) . "\r\n$data\r\n"
            : "HPUB $subject$r " . strlen($hdr) . " $size\r\n$hdr$data\r\n");
        $this->dirty = true;
    }

    /**
     * Subscribes callback(Message) to subject (wildcards allowed), as a
     * member of queue group $queue if given. Callbacks run while a call of
     * this connection waits. Returns the subscription id.
     */
    public function subscribe(string $subject, callable $callback, ?string $queue = null): int
    {
        self::checkSubject($subject);
        $sid = ++$this->nextSid;
        $this->subs[$sid] = [$subject, $queue, $callback];
        $this->send(self::subLine($sid, $subject, $queue));
        return $sid;
    }

    public function unsubscribe(int $sid): void
    {
        if (isset($this->subs[$sid])) {
            unset($this->subs[$sid]);
            if ($this->sock !== null) {
                $this->send("UNSUB $sid\r\n");
            }
        }
    }

    /**
     * Sends a request (with headers, if given) and returns the first answer.
     *
     * @param array<string, string|list<string>> $headers
     * @throws NoRespondersException when nobody listens on subject
     * @throws TimeoutException when no answer came in $timeout seconds
     */
    public function request(string $subject, string $data, float $timeout, array $headers = []): Message
    {
        $answer = null;
        $done = $this->gather($subject, $data, $timeout, function (Message $m) use (&$answer): bool {
            $answer = $m;
            return true;
        }, $headers);
        if (!$done) {
            // A reply subject we may not subscribe to looks like silence: say what the server said.
            $why = $this->lastError === null ? '' : " (the server reported: $this->lastError)";
            throw new TimeoutException(sprintf('nats: request to %s: no answer in %.3gs%s', $subject, $timeout, $why));
        }
        return $answer;
    }

    /**
     * Sends a request that may have many answers, and hands each to
     * $each(Message) until it returns true (then gather returns true) or
     * until $timeout seconds have passed (then false).
     *
     * @param array<string, string|list<string>> $headers
     * @throws NoRespondersException when nobody listens on subject
     */
    public function gather(string $subject, string $data, float $timeout, callable $each, array $headers = []): bool
    {
        $token = (string)++$this->respSeq;
        if ($this->respSid === null) {
            $this->respSid = $this->subscribe($this->respPrefix . '.*', static function (): void {
            });
        }
        $this->responses[$token] = [];
        try {
            $this->publish($subject, $data, $this->respPrefix . '.' . $token, $headers);
            return $this->pump(microtime(true) + $timeout, function () use ($token, $subject, $each): bool {
                while ($this->responses[$token] !== []) {
                    $m = array_shift($this->responses[$token]);
                    if ($m->status === '503') {
                        throw new NoRespondersException("nats: no responders on $subject");
                    }
                    if ($each($m)) {
                        return true;
                    }
                }
                return false;
            });
        } finally {
            unset($this->responses[$token]);
        }
    }

    /**
     * Reads and dispatches messages to subscriptions for $timeout seconds,
     * or until $until() is true (then it returns true). A $timeout of 0
     * reads only what has arrived already.
     */
    public function process(float $timeout, ?callable $until = null): bool
    {
        $this->connect();
        $until ??= static fn (): bool => false;
        if ($timeout <= 0) {
            try {
                $this->poll();
            } catch (LostConnection) {
                $this->reconnect();
            }
            return $until();
        }
        return $this->pump(microtime(true) + $timeout, $until);
    }

    /**
     * Drops the socket without a word: for a forked child that inherited
     * its parent's connection, which must neither write to it nor close it
     * with a flush.
     */
    public function forget(): void
    {
        $this->sock = null;
        $this->dirty = false;
    }

    /**
     * Waits until the server has processed everything sent so far.
     *
     * @throws TimeoutException
     */
    public function flush(?float $timeout = null): void
    {
        $timeout ??= (float)$this->opts['timeout'];
        $want = $this->pongs + 1;
        $this->send("PING\r\n");
        if (!$this->pump(microtime(true) + $timeout, fn (): bool => $this->pongs >= $want)) {
            throw new TimeoutException(sprintf('nats: flush: no PONG in %.3gs', $timeout));
        }
        $this->dirty = false;
    }

    /** Closes the connection, first making sure the server has what we published. */
    public function close(): void
    {
        if ($this->sock === null) {
            return;
        }
        if ($this->dirty) {
            $this->closing = true;
            try {
                $this->flush();
            } catch (NatsException) {
                // Closing anyway: there is nobody to tell.
            } finally {
                $this->closing = false;
            }
        }
        if ($this->sock !== null) {
            fclose($this->sock);
            $this->sock = null;
        }
    }

    private static function checkSubject(string $subject): void
    {
        if ($subject === '' || strpbrk($subject, " \t\r\n") !== false) {
            throw new NatsException("nats: invalid subject \"$subject\"");
        }
    }

    private static function subLine(int $sid, string $subject, ?string $queue): string
    {
        return $queue === null ? "SUB $subject $sid\r\n" : "SUB $subject $queue $sid\r\n";
    }

    /** Tries every server from the one after the current, $rounds times. */
    private function dial(int $rounds): void
    {
        $errors = [];
        $n = count($this->servers);
        for ($round = 0; $round < $rounds; $round++) {
            if ($round > 0) {
                usleep((int)($this->opts['reconnect_wait'] * 1e6));
            }
            for ($i = 1; $i <= $n; $i++) {
                $idx = ($this->current + $i) % $n;
                try {
                    $this->open($this->servers[$idx]);
                    $this->current = $idx;
                    return;
                } catch (ConnectionException $e) {
                    $errors[$idx] = $e->getMessage();
                }
            }
        }
        throw new ConnectionException('nats: no server accepted the connection: ' . implode('; ', $errors));
    }

    private function open(string $url): void
    {
        $u = parse_url(str_contains($url, '://') ? $url : "nats://$url");
        if ($u === false || !isset($u['host'])) {
            throw new ConnectionException("nats: bad server URL $url");
        }
        $host = $u['host'];
        $port = $u['port'] ?? 4222;
        $tlsOpt = $this->opts['tls'];
        $ssl = is_array($tlsOpt) ? $tlsOpt : [];
        $ssl += ['peer_name' => trim($host, '[]')];
        $sock = @stream_socket_client("tcp://$host:$port", $errno, $errstr, (float)$this->opts['connect_timeout'],
            // Without TCP_NODELAY, a PUB then a PING wait for the server's delayed ACK (40 ms).
            STREAM_CLIENT_CONNECT, stream_context_create(['ssl' => $ssl, 'socket' => ['tcp_nodelay' => true]]));
        if ($sock === false) {
            throw new ConnectionException("nats: connect to $url: $errstr");
        }
        $this->sock = $sock;
        $this->buf = '';
        $this->pos = 0;
        $this->pongs = 0;
        try {
            $deadline = microtime(true) + (float)$this->opts['connect_timeout'];
            $line = $this->readLine($deadline);
            if (!str_starts_with($line, 'INFO ')) {
                throw new ConnectionException("nats: $url is not a NATS server (it said \"" . substr($line, 0, 40) . '")');
            }
            $this->info = json_decode(substr($line, 5), true) ?: [];
            $tls = ($u['scheme'] ?? 'nats') === 'tls' || $tlsOpt !== false || !empty($this->info['tls_required']);
            if ($tls) {
                stream_set_blocking($sock, true);
                stream_set_timeout($sock, (int)ceil($this->opts['connect_timeout']));
                $ok = @stream_socket_enable_crypto($sock, true, STREAM_CRYPTO_METHOD_TLSv1_2_CLIENT | STREAM_CRYPTO_METHOD_TLSv1_3_CLIENT);
                if ($ok !== true) {
                    throw new ConnectionException("nats: TLS handshake with $url failed: " . (error_get_last()['message'] ?? 'unknown error'));
                }
            }
            stream_set_blocking($sock, false);
            $this->write('CONNECT ' . json_encode($this->connectOptions($u, $tls), JSON_UNESCAPED_SLASHES) . "\r\nPING\r\n");
            // The server answers PONG once it accepted CONNECT, -ERR otherwise.
            while (true) {
                $line = $this->readLine($deadline);
                if ($line === 'PONG') {
                    break;
                }
                if (str_starts_with($line, '-ERR')) {
                    throw new ConnectionException("nats: $url refused the connection: " . trim(substr($line, 4), " '"));
                }
                if (str_starts_with($line, 'INFO ')) {
                    $this->info = (json_decode(substr($line, 5), true) ?: []) + $this->info;
                }
            }
            foreach ($this->info['connect_urls'] ?? [] as $peer) {
                $this->learn(($tls ? 'tls://' : 'nats://') . $peer);
            }
            foreach ($this->subs as $sid => [$subject, $queue]) {
                $this->write(self::subLine($sid, $subject, $queue));
            }
        } catch (NatsException $e) {
            fclose($sock);
            $this->sock = null;
            throw $e instanceof ConnectionException ? $e : new ConnectionException("nats: $url: " . $e->getMessage(), 0, $e);
        }
    }

    private function connectOptions(array $u, bool $tls): array
    {
        $c = ['verbose' => false, 'pedantic' => false, 'tls_required' => $tls, 'name' => $this->opts['name'],
            'lang' => 'php', 'version' => self::VERSION, 'protocol' => 1, 'headers' => true, 'no_responders' => true];
        if (isset($u['user']) && isset($u['pass'])) {
            $c['user'] = urldecode($u['user']);
            $c['pass'] = urldecode($u['pass']);
        } elseif (isset($u['user'])) {
            $c['auth_token'] = urldecode($u['user']);
        } elseif ($this->opts['user'] !== null) {
            $c['user'] = $this->opts['user'];
            $c['pass'] = (string)$this->opts['pass'];
        } elseif ($this->opts['token'] !== null) {
            $c['auth_token'] = $this->opts['token'];
        }
        if ($this->opts['nkey_seed'] !== null) {
            $key = new NKey($this->opts['nkey_seed']);
            $c['nkey'] = $key->publicKey;
            $c['sig'] = $key->sign((string)($this->info['nonce'] ?? ''));
        }
        return $c;
    }

    /** Adds a cluster member that the server told us about. */
    private function learn(string $url): void
    {
        foreach ($this->servers as $known) {
            if (preg_replace('#^\w+://([^@/]*@)?#', '', $known) === preg_replace('#^\w+://#', '', $url)) {
                return;
            }
        }
        $this->servers[] = $url;
    }

    /** Writes a protocol line, noticing first a server that closed the connection, and retrying once on another server. */
    private function send(string $bytes): void
    {
        $this->connect();
        try {
            $this->poll();
            $this->write($bytes);
        } catch (LostConnection $e) {
            if ($this->closing) {
                throw $e;
            }
            $this->reconnect();
            $this->write($bytes);
        }
    }

    private function reconnect(): void
    {
        if ($this->sock !== null) {
            @fclose($this->sock);
            $this->sock = null;
        }
        $this->dial((int)$this->opts['reconnect_rounds']);
        $this->reconnects++;
    }

    private function write(string $bytes): void
    {
        $deadline = microtime(true) + (float)$this->opts['timeout'];
        while ($bytes !== '') {
            $n = @fwrite($this->sock, $bytes);
            if ($n === false) {
                throw new LostConnection('nats: write failed');
            }
            if ($n === 0) {
                $r = null;
                $w = [$this->sock];
                $e = null;
                $left = $deadline - microtime(true);
                if ($left <= 0) {
                    throw new LostConnection('nats: the server does not read');
                }
                if (@stream_select($r, $w, $e, (int)$left, (int)(fmod($left, 1.0) * 1e6)) === false) {
                    throw new LostConnection('nats: select failed');
                }
                continue;
            }
            $bytes = substr($bytes, $n);
        }
    }

    /** Reads what is there without waiting, and handles it (PINGs, an -ERR, EOF). */
    private function poll(): void
    {
        if (!$this->parsing && $this->fill(0.0)) {
            $this->parseAll(static fn (): bool => false);
        }
    }

    /**
     * Reads and handles protocol until $until() is true (returns true) or
     * the deadline passes (returns false). A lost connection is replaced by
     * the next server's, with the subscriptions renewed; replies that were
     * in flight are lost, and their callers time out.
     */
    private function pump(float $deadline, callable $until): bool
    {
        $this->connect();
        while (true) {
            try {
                if ($this->parseAll($until)) {
                    return true;
                }
                $left = $deadline - microtime(true);
                if ($left <= 0) {
                    return false;
                }
                $this->fill($left);
            } catch (LostConnection $e) {
                if ($this->closing) {
                    throw $e; // no point dialling again to say goodbye
                }
                $this->reconnect();
            }
        }
    }

    /** Parses every complete operation in the buffer; true as soon as $until() is. */
    private function parseAll(callable $until): bool
    {
        $this->parsing = true;
        try {
            while ($this->parseOne()) {
                if ($until()) {
                    return true;
                }
            }
            return $until();
        } finally {
            $this->parsing = false;
        }
    }

    private function parseOne(): bool
    {
        $end = strpos($this->buf, "\r\n", $this->pos);
        if ($end === false) {
            return false;
        }
        $line = substr($this->buf, $this->pos, $end - $this->pos);
        $op = strtoupper(strtok($line, " \t"));
        if ($op === 'MSG' || $op === 'HMSG') {
            $parts = preg_split('/[ \t]+/', $line);
            $total = (int)end($parts);
            $hdrLen = $op === 'HMSG' ? (int)$parts[count($parts) - 2] : 0;
            $hasReply = count($parts) === ($op === 'HMSG' ? 6 : 5);
            if (strlen($this->buf) < $end + 2 + $total + 2) {
                return false;
            }
            $body = substr($this->buf, $end + 2, $total);
            $this->consume($end + 2 + $total + 2);
            [$headers, $status] = $hdrLen > 0 ? self::parseHeaders(substr($body, 0, $hdrLen)) : [[], ''];
            $this->dispatch((int)$parts[2], new Message($parts[1], $hasReply ? $parts[3] : null,
                (string)substr($body, $hdrLen), $headers, $status));
            return true;
        }
        $this->consume($end + 2);
        switch ($op) {
            case 'PING':
                $this->write("PONG\r\n");
                break;
            case 'PONG':
                $this->pongs++;
                break;
            case 'INFO':
                $this->info = (json_decode(substr($line, 5), true) ?: []) + $this->info;
                break;
            case '-ERR':
                $msg = trim(substr($line, 4), " '");
                if (stripos($msg, 'stale connection') !== false) {
                    // We did not answer PINGs in time (a process busy elsewhere): dial again.
                    throw new LostConnection("nats: the server closed the connection: $msg");
                }
                if (stripos($msg, 'permissions violation') === false) {
                    // The server closes the connection after any other error; the next call dials again.
                    fclose($this->sock);
                    $this->sock = null;
                    throw new ConnectionException("nats: the server closed the connection: $msg");
                }
                $this->lastError = $msg;
                break;
        }
        return true;
    }

    private function consume(int $to): void
    {
        $this->pos = $to;
        if ($this->pos > 65536 || $this->pos === strlen($this->buf)) {
            $this->buf = substr($this->buf, $this->pos);
            $this->pos = 0;
        }
    }

    /** @return array{0: array<string, list<string>>, 1: string} */
    private static function parseHeaders(string $block): array
    {
        $lines = explode("\r\n", $block);
        $status = trim(substr(array_shift($lines), strlen('NATS/1.0')));
        $headers = [];
        foreach ($lines as $l) {
            $c = strpos($l, ':');
            if ($c !== false) {
                $headers[trim(substr($l, 0, $c))][] = trim(substr($l, $c + 1));
            }
        }
        return [$headers, (string)strtok($status, ' ')];
    }

    private function dispatch(int $sid, Message $m): void
    {
        if ($sid === $this->respSid) {
            $token = substr($m->subject, strlen($this->respPrefix) + 1);
            if (isset($this->responses[$token])) {
                $this->responses[$token][] = $m;
            }
            return;
        }
        if (isset($this->subs[$sid])) {
            ($this->subs[$sid][2])($m);
        }
    }

    private function readLine(float $deadline): string
    {
        while (($end = strpos($this->buf, "\r\n", $this->pos)) === false) {
            if (!$this->fill($deadline - microtime(true))) {
                throw new TimeoutException('nats: the server did not answer in time');
            }
        }
        $line = substr($this->buf, $this->pos, $end - $this->pos);
        $this->consume($end + 2);
        return $line;
    }

    /** Reads what arrives within $wait seconds; false if nothing did. */
    private function fill(float $wait): bool
    {
        // TLS streams may hold decrypted bytes that select() cannot see: read first.
        $data = @fread($this->sock, 65536);
        if ($data === '' || $data === false) {
            if (feof($this->sock)) {
                throw new LostConnection('nats: the server closed the connection');
            }
            if ($wait <= 0) {
                return false;
            }
            $r = [$this->sock];
            $w = $e = null;
            if (@stream_select($r, $w, $e, (int)$wait, (int)(fmod($wait, 1.0) * 1e6)) === 0) {
                return false;
            }
            $data = @fread($this->sock, 65536);
            if ($data === '' || $data === false) {
                if (feof($this->sock)) {
                    throw new LostConnection('nats: the server closed the connection');
                }
                return false;
            }
        }
        $this->buf .= $data;
        return true;
    }
}
