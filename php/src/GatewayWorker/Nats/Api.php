<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/**
 * Pushes and queries over NATS, as pkg/api's Client does in Go
 * (docs/protocol.md, "Pushing" and "Queries from another language"):
 * commands go to the gateway named by the client id, group, uid and
 * broadcast sends are published once, and queries ask every live gateway
 * and merge their answers.
 */
final class Api
{
    public const DEFAULT_PREFIX = 'gw';
    /** The longest group or uid, in bytes. */
    public const MAX_NAME_LEN = 256;
    /** How long a gateway may stay silent before queries stop waiting for it (3 beats of 1.5 s). */
    private const LIVE_FOR = 4.5;
    /** How long a process that has not heard a round of beats waits for ping answers. */
    public const DISCOVERY_WINDOW = 0.15;
    /** The most messages one history read returns. */
    public const MAX_HISTORY_LIMIT = 1000;
    /** How many times a recoverable push is sent (with the same Nats-Msg-Id) before giving up. */
    public const RECOVERABLE_ATTEMPTS = 8;

    private string $prefix;
    private ?int $beats = null;
    private float $beatsSince = 0.0;
    private bool $discovered = false;
    /** @var array<string, float> gateway id => when it was last heard of */
    private array $seen = [];
    /** @var list<string> the gateways that did not answer the last query */
    private array $missing = [];

    public function __construct(
        private readonly Connection $nc,
        string $prefix = self::DEFAULT_PREFIX,
        private readonly float $requestTimeout = 2.0,
        private readonly float $queryTimeout = 1.0,
        /** Throw PartialAnswerException when a gateway does not answer a query, rather than return what came. */
        private readonly bool $strict = false,
    ) {
        if ($prefix === '' || preg_match('/^[^.*> \t\r\n]+(\.[^.*> \t\r\n]+)*$/', $prefix) !== 1) {
            throw new NatsException("gatewayworker: subject prefix \"$prefix\": tokens must be non-empty, without wildcards or spaces");
        }
        $this->prefix = $prefix;
    }

    public function connection(): Connection
    {
        return $this->nc;
    }

    /** token(s) of docs/protocol.md: s itself if plain, else "~" + unpadded base64url. */
    public static function token(string $s): string
    {
        if (preg_match('/^[A-Za-z0-9_-]{1,64}$/', $s) === 1) {
            return $s;
        }
        return '~' . rtrim(strtr(base64_encode($s), '+/', '-_'), '=');
    }

    /** The reply-subject prefix of a role ("gateway", "worker", "api"), as bus.Subjects.Inbox. */
    public static function inboxPrefix(string $prefix, string $role): string
    {
        return '_INBOX.' . self::token($prefix === '' ? self::DEFAULT_PREFIX : $prefix) . '.' . $role;
    }

    /** The gateway id of a client id, or null if it is not a client id. */
    public static function gatewayOf(string $clientId): ?string
    {
        return preg_match('/^([A-Za-z0-9_]{1,32})-[0-9a-z]{1,13}-[0-9a-z]{1,13}$/D', $clientId, $m) === 1 ? $m[1] : null;
    }

    public static function checkName(string $name): void
    {
        if ($name === '' || strlen($name) > self::MAX_NAME_LEN) {
            throw new NatsException(sprintf('gatewayworker: group or uid "%s" must be 1 to %d bytes', $name, self::MAX_NAME_LEN));
        }
    }

    /** The gateways that did not answer the last query (empty when all did). */
    public function missingGateways(): array
    {
        return $this->missing;
    }

    /**
     * Sends a command about one client to its gateway and waits for the
     * answer. Returns the Reply, or null when the client is not connected
     * (not_found, or its gateway is not running).
     *
     * @throws NatsException bad client id, limit, bad_request, or no answer in time
     */
    public function toClient(string $clientId, int $op, string $name = '', string $body = '', int $frame = Envelope::FRAME_DEFAULT): ?array
    {
        $gw = self::gatewayOf($clientId);
        if ($gw === null) {
            throw new NatsException("gatewayworker: invalid client id \"$clientId\"");
        }
        try {
            $m = $this->nc->request("$this->prefix.$gw.cmd", Envelope::command($op, [$clientId], $name, $body, [], $frame), $this->requestTimeout);
        } catch (NoRespondersException) {
            return null; // its gateway is gone, and the client with it
        } catch (TimeoutException $e) {
            throw new TimeoutException("gatewayworker: gateway $gw unavailable: " . $e->getMessage(), 0, $e);
        }
        $r = Envelope::reply($m->data);
        return match ($r['e']) {
            '' => $r,
            'not_found' => null,
            'limit' => throw new NatsException("gatewayworker: limit: {$r['m']}"),
            default => throw new NatsException("gatewayworker: bad request: {$r['m']}"),
        };
    }

    /** Sends a command to clients of any gateways without waiting: one publish per gateway. */
    public function toClientsAsync(array $clientIds, int $op, string $body = ''): void
    {
        $byGateway = [];
        foreach ($clientIds as $id) {
            $gw = self::gatewayOf((string)$id);
            if ($gw === null) {
                throw new NatsException("gatewayworker: invalid client id \"$id\"");
            }
            $byGateway[$gw][(string)$id] = true;
        }
        foreach ($byGateway as $gw => $ids) {
            $this->nc->publish("$this->prefix.$gw.cmd", Envelope::command($op, array_map('strval', array_keys($ids)), '', $body));
        }
    }

    /** Sends $data to the clients bound to $uid; a recoverable push is stored first (pushRecoverable). */
    public function sendToUid(string $uid, string $data, bool $recoverable = false): void
    {
        self::checkName($uid);
        $cmd = Envelope::command(Envelope::OP_SEND, [], '', $data);
        if ($recoverable) {
            $this->pushRecoverable("$this->prefix.h.u." . self::token($uid), $cmd);
            return;
        }
        $this->nc->publish("$this->prefix.uid." . self::token($uid), $cmd);
    }

    /**
     * Sends $data to the members of $group but $exclude; a recoverable push is stored first.
     *
     * @param list<string> $exclude
     */
    public function sendToGroup(string $group, string $data, array $exclude = [], bool $recoverable = false): void
    {
        self::checkName($group);
        $cmd = Envelope::command(Envelope::OP_SEND, [], '', $data, $exclude);
        if ($recoverable) {
            $this->pushRecoverable("$this->prefix.h.g." . self::token($group), $cmd);
            return;
        }
        $this->nc->publish("$this->prefix.grp." . self::token($group), $cmd);
    }

    /** The JetStream stream of recoverable pushes: HISTORY_ and the prefix with "." as "_". */
    public function historyStream(): string
    {
        return 'HISTORY_' . str_replace('.', '_', $this->prefix);
    }

    /**
     * Publishes a recoverable push with JetStream semantics: a request to
     * $subject (<p>.h.u.* or <p>.h.g.*), answered by the stream's PubAck once
     * stored; gateways deliver it from the stream's republish. An attempt
     * that gets no answer in $requestTimeout, or a JetStream 503, is repeated
     * with the same Nats-Msg-Id, which the stream's duplicate window (2 min)
     * stores once, at most RECOVERABLE_ATTEMPTS times in all, waiting 50 ms
     * doubling up to 1 s between them (as the Go side's bus.Conn.PublishRecoverable).
     * "No responders" is also what a clustered stream electing a leader
     * answers: only the stream's info tells that there is no stream.
     *
     * @throws HistoryUnavailableException when no stream stores $subject
     * @throws TimeoutException when no attempt was acknowledged
     */
    private function pushRecoverable(string $subject, string $cmd): void
    {
        $headers = ['Nats-Msg-Id' => bin2hex(random_bytes(12))];
        $why = '';
        for ($attempt = 1; $attempt <= self::RECOVERABLE_ATTEMPTS; $attempt++) {
            if ($attempt > 1) {
                usleep(min(50000 << ($attempt - 2), 1000000));
            }
            try {
                $m = $this->nc->request($subject, $cmd, $this->requestTimeout, $headers);
            } catch (NoRespondersException $e) {
                try {
                    $this->streamInfo(); // no stream, or no JetStream: HistoryUnavailableException
                } catch (HistoryUnavailableException) {
                    throw new HistoryUnavailableException("gatewayworker: no JetStream stream stores $subject: history is off, or the NATS server has no JetStream");
                } catch (NatsException $e) {
                    // Unknown for now (no meta leader yet): try again.
                }
                $why = $e->getMessage();
                continue;
            } catch (TimeoutException $e) {
                $why = $e->getMessage();
                continue;
            }
            $ack = json_decode($m->data, true);
            if (!is_array($ack)) {
                throw new NatsException("gatewayworker: recoverable push to $subject: not a JetStream acknowledgement: " . substr($m->data, 0, 100));
            }
            if (isset($ack['error'])) {
                $why = 'JetStream: ' . ($ack['error']['description'] ?? json_encode($ack['error']));
                if ((int)($ack['error']['code'] ?? 0) === 503) {
                    continue; // no quorum for now (a stream leader moving): try again
                }
                throw new NatsException("gatewayworker: recoverable push to $subject: $why");
            }
            if (($ack['stream'] ?? '') !== $this->historyStream() || !isset($ack['seq'])) {
                throw new NatsException("gatewayworker: recoverable push to $subject: stored by stream \"" . ($ack['stream'] ?? '') . '", not ' . $this->historyStream());
            }
            return;
        }
        throw new TimeoutException(sprintf('gatewayworker: recoverable push to %s: not acknowledged after %d attempts: %s', $subject, self::RECOVERABLE_ATTEMPTS, $why));
    }

    /**
     * The recoverable pushes to a uid or group ($kind "uid" or "group") stored
     * after position $since ("" for all that are stored), at most $limit, read
     * with JetStream direct gets, as pkg/api's GetHistory. Returns
     * ['messages' => [['pos' => .., 'data' => .., 'frame' => 'default'|'text'|'binary'], ...],
     * 'complete' => bool]. With $since, complete is false, and nothing is
     * returned, when the history no longer reaches back to it (or it is of a
     * recreated stream, or beyond the last); without, complete says whether the
     * stream still holds its first message. To read on, pass the last message's pos.
     *
     * @throws \InvalidArgumentException a bad kind, name, position or limit (0 for 100, up to MAX_HISTORY_LIMIT)
     * @throws HistoryUnavailableException when the NATS server has no JetStream or no history stream
     */
    public function history(string $kind, string $name, string $since = '', int $limit = 100): array
    {
        $k = match ($kind) {
            'uid' => 'u',
            'group' => 'g',
            default => throw new \InvalidArgumentException("gatewayworker: history kind \"$kind\" is neither uid nor group"),
        };
        if ($name === '' || strlen($name) > self::MAX_NAME_LEN) {
            throw new \InvalidArgumentException(sprintf('gatewayworker: group or uid "%s" must be 1 to %d bytes', $name, self::MAX_NAME_LEN));
        }
        $limit = $limit === 0 ? 100 : $limit;
        if ($limit < 1 || $limit > self::MAX_HISTORY_LIMIT) {
            throw new \InvalidArgumentException(sprintf('gatewayworker: history limit %d is not between 1 and %d', $limit, self::MAX_HISTORY_LIMIT));
        }
        $epoch = null;
        $after = 0;
        if ($since !== '') {
            if (preg_match('/^([0-9a-z]{1,13}):([0-9]{1,18})$/D', $since, $m) !== 1) {
                throw new \InvalidArgumentException("gatewayworker: position \"$since\" is not <epoch>:<seq>");
            }
            [$epoch, $after] = [$m[1], (int)$m[2]];
        }
        $info = $this->streamInfo();
        $current = self::epochOf($info['created'] ?? '');
        // Messages after $since may be gone (age or size bound), or $since is of a
        // recreated stream, or beyond its end: then nothing is certain.
        $complete = $after + 1 >= (int)($info['state']['first_seq'] ?? 0)
            && ($epoch === null || ($epoch === $current && $after <= (int)($info['state']['last_seq'] ?? 0)));
        if (!$complete && $epoch !== null) {
            return ['messages' => [], 'complete' => false];
        }
        $messages = [];
        $subject = "$this->prefix.h.$k." . self::token($name);
        $req = json_encode(['seq' => $after + 1, 'next_by_subj' => $subject, 'batch' => $limit]);
        $fault = null;
        try {
            $done = $this->nc->gather('$JS.API.DIRECT.GET.' . $this->historyStream(), $req, $this->requestTimeout,
                function (Message $m) use ($current, &$messages, &$fault): bool {
                    if ($m->status === '404' || $m->status === '204') {
                        return true; // nothing (more) stored: 404 Message Not Found, 204 EOB
                    }
                    if ($m->status !== '') {
                        $fault = "gatewayworker: history: JetStream answered status $m->status";
                        return true;
                    }
                    $cmd = Envelope::decode($m->data);
                    $messages[] = [
                        'pos' => $current . ':' . ($m->headers['Nats-Sequence'][0] ?? '0'),
                        'data' => (string)($cmd['b'] ?? ''),
                        'frame' => match ((int)($cmd['f'] ?? 0)) {
                            Envelope::FRAME_TEXT => 'text',
                            Envelope::FRAME_BINARY => 'binary',
                            default => 'default',
                        },
                    ];
                    return false;
                });
        } catch (NoRespondersException) {
            throw new HistoryUnavailableException('gatewayworker: stream ' . $this->historyStream() . ' does not answer direct gets (allow_direct is off)');
        }
        if ($fault !== null) {
            throw new NatsException($fault);
        }
        if (!$done) {
            throw new TimeoutException(sprintf('gatewayworker: history of %s: no end in %.3gs', $subject, $this->requestTimeout));
        }
        return ['messages' => $messages, 'complete' => $complete];
    }

    /** $JS.API.STREAM.INFO of the history stream, decoded. */
    private function streamInfo(): array
    {
        $stream = $this->historyStream();
        try {
            $m = $this->nc->request('$JS.API.STREAM.INFO.' . $stream, '', $this->requestTimeout);
        } catch (NoRespondersException) {
            throw new HistoryUnavailableException('gatewayworker: the NATS server has no JetStream: history is unavailable');
        }
        $info = json_decode($m->data, true);
        if (!is_array($info)) {
            throw new NatsException('gatewayworker: stream info: not JSON: ' . substr($m->data, 0, 100));
        }
        if (isset($info['error'])) {
            $e = $info['error'];
            if ((int)($e['code'] ?? 0) === 404) {
                throw new HistoryUnavailableException("gatewayworker: no stream $stream: history is off (gateways with --history create it)");
            }
            throw new NatsException("gatewayworker: stream $stream: " . ($e['description'] ?? json_encode($e)));
        }
        return $info;
    }

    /** Unix ms, base 36, of an RFC 3339 time with up to nanoseconds ("2026-12-03T06:20:00.123456789Z"). */
    private static function epochOf(string $created): string
    {
        if (preg_match('/^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/D', $created, $m) !== 1) {
            throw new NatsException("gatewayworker: stream creation time \"$created\" is not RFC 3339");
        }
        $t = \DateTimeImmutable::createFromFormat('Y-m-d\TH:i:sP', $m[1] . ($m[3] === 'Z' ? '+00:00' : $m[3]));
        if ($t === false) {
            throw new NatsException("gatewayworker: stream creation time \"$created\" is not RFC 3339");
        }
        $ms = $t->getTimestamp() * 1000 + (int)substr(str_pad($m[2], 3, '0'), 0, 3);
        return base_convert((string)$ms, 10, 36);
    }

    /** @param list<string> $exclude */
    public function sendToAll(string $data, array $exclude = []): void
    {
        $this->nc->publish("$this->prefix.all", Envelope::command(Envelope::OP_SEND, [], '', $data, $exclude));
    }

    public function ungroup(string $group): void
    {
        self::checkName($group);
        $this->nc->publish("$this->prefix.grp." . self::token($group), Envelope::command(Envelope::OP_UNGROUP));
    }

    /** The sum of a counting query's answers. */
    public function count(string $query, string $name = ''): int
    {
        $n = 0;
        foreach ($this->query($query, $name) as $r) {
            $n += $r['n'];
        }
        return $n;
    }

    /** A list query's answers, sorted and without duplicates (a uid or group spans gateways). */
    public function items(string $query, string $name = ''): array
    {
        $items = [];
        foreach ($this->query($query, $name) as $r) {
            foreach ($r['i'] as $item) {
                $items[$item] = true;
            }
        }
        $items = array_map('strval', array_keys($items));
        sort($items, SORT_STRING);
        return $items;
    }

    /** A sessions query's answers: client id => session. */
    public function sessions(string $query, string $name = ''): array
    {
        $out = [];
        foreach ($this->query($query, $name) as $r) {
            foreach ($r['s'] as $id => $raw) {
                $out[$id] = Envelope::decodeSession($raw);
            }
        }
        ksort($out, SORT_STRING);
        return $out;
    }

    /**
     * Runs a query on every live gateway and returns every Reply part that
     * came. When some expected gateway did not answer in time, the result
     * is partial: missingGateways() names them, and in strict mode
     * PartialAnswerException carries the result instead.
     *
     * @return list<array> Reply arrays (Envelope::reply)
     */
    public function query(string $query, string $name = ''): array
    {
        $expected = $this->liveGateways();
        $data = $name === '' ? '' : Envelope::command(0, [], $name);
        $done = [];
        $parts = [];
        $fault = null;
        $this->missing = [];
        try {
            $complete = $this->nc->gather("$this->prefix.q.$query", $data, $this->queryTimeout,
                function (Message $m) use ($expected, &$done, &$parts, &$fault): bool {
                    try {
                        $r = Envelope::reply($m->data);
                    } catch (NatsException) {
                        return false;
                    }
                    $g = $r['g'];
                    if ($g === '' || isset($done[$g])) {
                        return false;
                    }
                    if ($r['e'] !== '') {
                        $fault = "gatewayworker: gateway $g: {$r['e']}: {$r['m']}";
                        return true;
                    }
                    $parts[] = $r;
                    if ($r['more']) {
                        return false;
                    }
                    $done[$g] = true;
                    $this->seen[$g] = microtime(true);
                    foreach ($expected as $id) {
                        if (!isset($done[$id])) {
                            return false;
                        }
                    }
                    return $expected !== [];
                });
        } catch (NoRespondersException) {
            return []; // no gateway runs: nobody is online
        }
        if ($fault !== null) {
            throw new NatsException($fault);
        }
        if (!$complete) {
            $this->missing = array_values(array_diff($expected, array_keys($done)));
            sort($this->missing);
            if ($this->missing !== [] && $this->strict) {
                throw new PartialAnswerException($this->missing, $parts);
            }
        }
        return $parts;
    }

    /** Gateways that answer queries now, from their beats, or from a ping round for a process that just started. */
    public function liveGateways(): array
    {
        $now = microtime(true);
        if ($this->beats === null) {
            $this->beats = $this->nc->subscribe("$this->prefix.hb", function (Message $m): void {
                try {
                    $b = Envelope::decode($m->data);
                } catch (NatsException) {
                    return;
                }
                $g = (string)($b['g'] ?? '');
                if ($g !== '' && !empty($b['l'])) {
                    unset($this->seen[$g]);
                } elseif ($g !== '') {
                    $this->seen[$g] = microtime(true);
                }
            });
            $this->beatsSince = $now;
        }
        $this->nc->process(0.0); // beats that came while the process did other things
        if (!$this->discovered && $now - $this->beatsSince < self::LIVE_FOR) {
            try {
                $this->nc->gather("$this->prefix.q.ping", '', self::DISCOVERY_WINDOW, function (Message $m): bool {
                    try {
                        $g = Envelope::reply($m->data)['g'];
                    } catch (NatsException) {
                        return false;
                    }
                    if ($g !== '') {
                        $this->seen[$g] = microtime(true);
                    }
                    return false;
                });
            } catch (NoRespondersException) {
                // No gateway runs.
            }
            $this->discovered = true;
        }
        $ids = [];
        foreach ($this->seen as $g => $at) {
            if (microtime(true) - $at <= self::LIVE_FOR) {
                $ids[] = (string)$g;
            } else {
                unset($this->seen[$g]);
            }
        }
        sort($ids);
        return $ids;
    }
}
