<?php

declare(strict_types=1);

namespace GatewayWorker;

use GatewayWorker\Lib\Context;
use GatewayWorker\Lib\Gateway;
use GatewayWorker\Nats\Api;
use GatewayWorker\Nats\Connection;
use GatewayWorker\Nats\Envelope;
use GatewayWorker\Nats\Message;
use GatewayWorker\Nats\NatsException;

/**
 * GatewayWorker's BusinessWorker over gatewayworker's worker protocol
 * (docs/protocol.md, "Workers in another language"): it runs the static
 * methods of $eventHandler (Events.php) for the events of clients of our
 * gateways, in $count forked processes.
 *
 * The master process runs no handler. It forks the workers, restarts one
 * that dies, forwards SIGTERM (each worker drains: it stops taking events,
 * finishes what it took, acknowledges, runs onWorkerStop and exits), and
 * sends the progress reports (AckWorking, every 250 ms) of every batch a
 * worker runs, which the worker announces over a pipe: a handler that
 * blocks for as long as it likes keeps its batch, and a worker that dies
 * stops its reports at once, so its batch goes to another worker after the
 * gateways' AckTimeout.
 */
#[\AllowDynamicProperties] // GatewayWorker's other settings ($processTimeout, ...) are accepted and ignored
class BusinessWorker
{
    /** The process name (in ps), as in GatewayWorker. */
    public string $name = 'BusinessWorker';
    /** Worker processes. */
    public int $count = 1;
    /** The class whose static methods handle events. */
    public string $eventHandler = 'Events';
    /** NATS server URLs (a list: a broken connection moves to the next). They replace $registerAddress. */
    public string|array $natsUrls = Connection::DEFAULT_URL;
    public ?string $natsToken = null;
    public ?string $natsUser = null;
    public ?string $natsPassword = null;
    public ?string $natsNkeySeed = null;
    /** true, or the "ssl" stream context options (cafile, local_cert, local_pk, ...). */
    public bool|array $natsTls = false;
    /** The deployment's subject prefix (the gateways' --prefix). */
    public string $prefix = Api::DEFAULT_PREFIX;
    /**
     * Keep each client's events on the worker process that took its first
     * ones, while that process lives, as GatewayWorker's routing did: for
     * Events.php that keeps per-client or per-room state in static
     * variables. When the process dies or stops, its clients move to
     * another process (where that state is not). docs/protocol.md, "Sticky workers".
     */
    public bool $sticky = false;
    /** Seconds a stopping worker lets its handlers run before it exits anyway. */
    public float $drainTimeout = 30.0;
    /** Called in each worker process before it takes events, after Events::onWorkerStart. */
    public $onWorkerStart = null;
    /** Called in each worker process after its last event. */
    public $onWorkerStop = null;
    /** The worker process's number, 0 to $count-1 (in the master: -1). */
    public int $id = -1;
    /** GatewayWorker's settings, accepted so that old start scripts run, and ignored. */
    public string|array $registerAddress = '';
    public string $secretKey = '';

    /** The seq of synthesized close batches (docs/protocol.md), as ext-msgpack decodes it. */
    public const REAP_SEQ = '18446744073709551614';
    /** Seconds between progress reports (bus.ProgressInterval). */
    private const PROGRESS_EVERY = 0.25;
    /** A batch taken later than this after its arrival may run elsewhere: claim it first. */
    private const CLAIM_AFTER = 0.1;
    /** Seconds a claim waits for its gateway. */
    private const CLAIM_TIMEOUT = 1.0;
    /** How long the clients of a synthesized close are remembered, to drop their late events. */
    private const GONE_FOR = 600.0;
    /** Seconds between starts of the same worker number, so that a crash at start does not spin. */
    public const RESTART_EVERY = 1.0;

    /** @var list<BusinessWorker> */
    private static array $all = [];

    // Worker process state.
    private ?Connection $nc = null;
    /** @var list<Message> batches taken off the socket, not run yet */
    private array $queue = [];
    /** @var array<string, array{running: int|string, done: int|string, ack: ?string, at: float}> per client */
    private array $recent = [];
    /** @var array<string, float> clients whose synthesized close ran here */
    private array $gone = [];
    /** This process's id on <p>.ev.<id> when $sticky; '' when not, or once it drains. */
    private string $stickyId = '';
    /** This process's id in `gatewayworker status` (and, when $sticky, in its subject), its start (Unix ms), its events handled. */
    private string $workerId = '';
    private int $boot = 0;
    private int $handled = 0;
    private int $inFlight = 0;
    /** @var list<string> reply subjects of <p>.wk.info requests, answered between batches */
    private array $infoRequests = [];
    /** @var resource|null the pipe to the master */
    private $pipe = null;
    private int $errors = 0;
    private float $errorsSince = 0.0;

    public function __construct()
    {
        self::$all[] = $this;
    }

    /**
     * Starts every BusinessWorker created (Workerman's Worker::runAll): the
     * master forks their processes and returns when they have all stopped
     * (SIGTERM or SIGINT).
     */
    public static function runAll(): void
    {
        if (!extension_loaded('pcntl') || !extension_loaded('posix')) {
            throw new NatsException('BusinessWorker needs the pcntl and posix extensions (Debian php-cli has them)');
        }
        // Workerman's commands: only "start" (in the foreground) is ours. The
        // others must not start a second set of workers by mistake.
        $cmd = $_SERVER['argv'][1] ?? 'start';
        if ($cmd !== 'start') {
            fwrite(STDERR, "BusinessWorker: \"$cmd\" is Workerman's; this BusinessWorker runs in the foreground with \"start\" (or no argument) and stops on SIGTERM or SIGINT\n");
            exit(64);
        }
        if (in_array('-d', $_SERVER['argv'] ?? [], true)) {
            self::log('-d ignored: the BusinessWorker runs in the foreground (use systemd or a container to keep it running)');
        }
        (new Master(self::$all))->run();
    }

    /** @internal the number of worker processes, for the master. */
    public function processes(): int
    {
        if ($this->count < 1) {
            throw new NatsException("BusinessWorker $this->name: \$count must be at least 1, not $this->count");
        }
        return $this->count;
    }

    /** @internal the NATS connection of a worker (or master) process. */
    public function connect(string $role): Connection
    {
        return new Connection([
            'servers' => $this->natsUrls, 'token' => $this->natsToken, 'user' => $this->natsUser,
            'pass' => $this->natsPassword, 'nkey_seed' => $this->natsNkeySeed, 'tls' => $this->natsTls,
            'name' => "$this->name-$role", 'inbox_prefix' => Api::inboxPrefix($this->prefix, 'worker'),
        ]);
    }

    /**
     * @internal Runs worker process $id until SIGTERM, SIGINT or the
     * master's death; $pipe carries its running batches to the master.
     *
     * @param resource $pipe
     */
    public function serve(int $id, $pipe): int
    {
        $this->id = $id;
        $this->pipe = $pipe;
        $master = posix_getppid();
        // Signals wait until the loop looks: one arriving during a handler
        // must not cut its sleep() or its socket reads short.
        pcntl_sigprocmask(SIG_BLOCK, [SIGTERM, SIGINT]);
        pcntl_signal(SIGPIPE, SIG_IGN);
        if (function_exists('cli_set_process_title')) {
            @cli_set_process_title("$this->name: worker process $id");
        }
        $this->nc = $this->connect("worker-$id");
        Gateway::$prefix = $this->prefix;
        Gateway::setConnection($this->nc);

        if (!class_exists($this->eventHandler)) {
            // Where Workerman's autoloader looks: beside the start script.
            $file = dirname(get_included_files()[0]) . '/' . str_replace('\\', '/', $this->eventHandler) . '.php';
            if (is_file($file)) {
                require_once $file;
            }
        }
        $this->call('onWorkerStart', [$this]);
        if (is_callable($this->onWorkerStart)) {
            ($this->onWorkerStart)($this);
        }
        $enqueue = function (Message $m): void {
            $this->queue[] = $m;
        };
        $subs = [
            $this->nc->subscribe("$this->prefix.ev", $enqueue, 'workers'),
            $this->nc->subscribe("$this->prefix.evl", $enqueue, 'workers'),
        ];
        $this->workerId = bin2hex(random_bytes(6));
        $this->boot = (int)(microtime(true) * 1000);
        if ($this->sticky) {
            $this->stickyId = $this->workerId;
            $subs[] = $this->nc->subscribe("$this->prefix.ev.$this->stickyId", $enqueue);
        }
        // `gatewayworker status` lists each process. The answer waits for
        // the loop: a callback must not write while a handler's call reads.
        $subs[] = $this->nc->subscribe("$this->prefix.wk.info", function (Message $m): void {
            if ($m->reply !== null && count($this->infoRequests) < 100) {
                $this->infoRequests[] = $m->reply;
            }
        });
        $this->nc->flush();
        self::log("worker $id taking events on $this->prefix.ev" . ($this->sticky ? " and $this->prefix.ev.$this->stickyId" : ''));

        $emptyAt = microtime(true);
        $forgetAt = $emptyAt + 10;
        // Sticky: taking the signal off the pending set happens once.
        $stop = false;
        $stopping = function () use (&$stop, $master): bool {
            return $stop = $stop || pcntl_sigtimedwait([SIGTERM, SIGINT], $info, 0, 0) > 0 || posix_getppid() !== $master;
        };
        while (!$stopping()) {
            if ($this->queue === []) {
                // What sits in the socket arrived while handlers ran: it may have waited.
                $this->nc->process(0);
            }
            if ($this->queue === []) {
                $emptyAt = microtime(true);
                $this->nc->process(self::PROGRESS_EVERY, fn (): bool => $this->queue !== []);
                // The buffer was empty until these came.
                $emptyAt = microtime(true);
            }
            while ($this->queue !== [] && !$stopping()) {
                $m = array_shift($this->queue);
                $now = microtime(true);
                $this->onBatch($m, $now, $now - $emptyAt > self::CLAIM_AFTER);
                $this->answerInfo();
            }
            $this->answerInfo();
            if (microtime(true) > $forgetAt) {
                $this->forgetOld(microtime(true));
                $forgetAt = microtime(true) + 10;
            }
        }

        // Drain: no more batches come once the server has our UNSUBs; run those that did.
        self::log("worker $id draining");
        $deadline = microtime(true) + $this->drainTimeout;
        $this->stickyId = ''; // its clients go back to the queue group
        foreach ($subs as $sid) {
            $this->nc->unsubscribe($sid);
        }
        $this->nc->flush();
        while ($this->queue !== []) {
            $m = array_shift($this->queue);
            if (microtime(true) > $deadline) {
                self::log("worker $id: drain timeout, " . (count($this->queue) + 1) . ' batches left to their gateways');
                break;
            }
            $this->onBatch($m, microtime(true), true);
        }
        $this->call('onWorkerStop', [$this]);
        if (is_callable($this->onWorkerStop)) {
            ($this->onWorkerStop)($this);
        }
        $this->nc->close();
        self::log("worker $id stopped");
        return 0;
    }

    /** Answers the <p>.wk.info requests that came. */
    private function answerInfo(): void
    {
        foreach ($this->infoRequests as $reply) {
            try {
                $this->nc->publish($reply, Envelope::workerInfoReply($this->workerId, $this->boot, $this->handled, $this->inFlight));
            } catch (NatsException $e) {
                $this->logError('status request not answered: ' . $e->getMessage());
            }
        }
        $this->infoRequests = [];
    }

    /** Runs one batch, or answers it without running it (docs/protocol.md, "Workers in another language"). */
    private function onBatch(Message $m, float $now, bool $waited): void
    {
        try {
            $b = Envelope::decode($m->data);
        } catch (NatsException $e) {
            $this->logError('event batch dropped: ' . $e->getMessage());
            return;
        }
        $client = (string)($b['c'] ?? '');
        $seq = $b['q'] ?? 0;
        $reap = $seq === self::REAP_SEQ;
        if ($client === '' || $m->reply === null || !is_array($b['e'] ?? null) || !($reap || (is_int($seq) && $seq > 0))) {
            $this->logError("event batch dropped on $m->subject: no client, reply subject, events or seq");
            return;
        }
        if ($this->forged($m->subject, $reap, $b['e'], $client)) {
            return;
        }
        if ($reap || isset($this->gone[$client])) {
            if (isset($this->gone[$client])) {
                // Its synthesized close ran here: the close stays its last event.
                $this->nc->publish($m->reply, Envelope::ack($client, $seq, Envelope::ACK_DONE));
                return;
            }
            $this->gone[$client] = $now;
            unset($this->recent[$client]);
            $this->process($b, $client, $seq, $m->reply);
            return;
        }
        $claim = $waited || !empty($b['r']);
        $st = $this->recent[$client] ?? null;
        if ($st !== null) {
            if ($seq === $st['done']) {
                $this->nc->publish($m->reply, $st['ack'] ?? Envelope::ack($client, $seq, Envelope::ACK_DONE));
                return;
            }
            if ($seq === $st['running'] && $st['running'] > $st['done']) {
                return; // runs here now (a blocked handler's batch, resent): its progress reports keep the gateway waiting
            }
            if ($seq < $st['done']) {
                // A stale copy, or our record is wrong (a forged batch with a higher seq): the gateway tells.
                $claim = true;
            }
        }
        if ($claim && !$this->claim($client, $seq, $m->reply)) {
            return;
        }
        $this->recent[$client] = ['running' => $seq, 'done' => min($st['done'] ?? 0, $seq - 1), 'ack' => $st['ack'] ?? null, 'at' => $now];
        $this->process($b, $client, $seq, $m->reply);
    }

    /**
     * A batch only a forger sends: on <p>.evl belongs only a reaper's
     * synthesized close (one close event, REAP_SEQ), and such a close
     * nowhere else.
     */
    private function forged(string $subject, bool $reap, array $events, string $client): bool
    {
        $synthesized = $reap && count($events) === 1 && (int)($events[0]['k'] ?? 0) === 4;
        if ($subject === "$this->prefix.evl" ? $synthesized : !$reap) {
            return false;
        }
        $this->logError("event batch dropped: forged (subject $subject, client $client)");
        return true;
    }

    /** Asks the batch's gateway whether to run it (an AckWorking request); no answer means no. */
    private function claim(string $client, int|string $seq, string $reply): bool
    {
        try {
            $a = Envelope::decode($this->nc->request($reply, Envelope::ack($client, $seq, Envelope::ACK_WORKING), self::CLAIM_TIMEOUT)->data);
        } catch (NatsException $e) {
            $this->logError("batch of $client not claimed, its gateway will send it again: " . $e->getMessage());
            return false;
        }
        return (int)($a['t'] ?? 0) === Envelope::ACK_WORKING && ($a['q'] ?? null) === $seq;
    }

    /** Runs the handlers of a batch, then acknowledges it, with the session if they changed it. */
    private function process(array $b, string $client, int|string $seq, string $reply): void
    {
        $this->tellMaster("R $client $seq $reply");
        $this->inFlight++;
        $gateway = (string)($b['g'] ?? '');
        $addr = (string)($b['a'] ?? '');
        $sep = strrpos($addr, ':');
        $server = [
            'REMOTE_ADDR' => $sep === false ? $addr : trim(substr($addr, 0, $sep), '[]'),
            'REMOTE_PORT' => $sep === false ? 0 : (int)substr($addr, $sep + 1),
            'GATEWAY_ADDR' => $gateway,
            'GATEWAY_PORT' => 0,
            'GATEWAY_CLIENT_ID' => $client,
        ];
        try {
            $session = Envelope::decodeSession((string)($b['s'] ?? ''));
        } catch (NatsException $e) {
            $this->logError("session of $client not readable, handlers see none: " . $e->getMessage());
            $session = [];
        }
        $closed = $changed = false;
        foreach ($b['e'] as $ev) {
            $ev = is_array($ev) ? $ev : [];
            $_SERVER = $server;
            Context::$client_id = $client;
            $_SESSION = Context::$old_session = $session === [] ? null : $session;
            $kind = (int)($ev['k'] ?? 0);
            $closed = $closed || $kind === 4;
            match ($kind) {
                1 => $this->call('onConnect', [$client]),
                2 => $this->call('onWebSocketConnect', [$client, $this->webSocketData((array)($ev['w'] ?? []), $server)]),
                3 => $this->call('onMessage', [$client, (string)($ev['b'] ?? '')]),
                4 => $this->call('onClose', [$client]),
                default => null, // a kind newer than this worker: acknowledged, not run
            };
            $this->handled++;
            if ($_SESSION !== null && !is_array($_SESSION)) {
                $this->logError("\$_SESSION of $client must be an array or null, not " . get_debug_type($_SESSION) . ': not saved');
                $_SESSION = Context::$old_session;
            }
            // Changed by the handler: the ack saves it. Changed through
            // Gateway::setSession or updateSession (which move old_session
            // along): stored already, and the next event starts from it.
            $changed = $changed || $_SESSION !== Context::$old_session;
            $session = (array)($_SESSION ?? []);
        }
        $setSession = $changed && !$closed;
        $worker = $closed ? '' : $this->stickyId;
        try {
            $ack = Envelope::ack($client, $seq, Envelope::ACK_DONE, $setSession, $setSession ? Envelope::encodeSession($session) : '', $worker);
        } catch (NatsException $e) {
            $this->logError("session of $client not saved: " . $e->getMessage());
            $ack = Envelope::ack($client, $seq, Envelope::ACK_DONE, false, '', $worker);
        }
        Context::clear();
        $_SESSION = null;
        if (isset($this->recent[$client])) {
            $this->recent[$client] = ['running' => $seq, 'done' => $seq, 'ack' => $ack, 'at' => microtime(true)];
        }
        if ($closed) {
            unset($this->recent[$client]);
        }
        $this->inFlight--;
        $this->tellMaster("D $client $seq");
        try {
            $this->nc->publish($reply, $ack);
        } catch (NatsException $e) {
            $this->logError("ack of $client not sent, the gateway will send the batch again: " . $e->getMessage());
        }
    }

    /**
     * The $data GatewayWorker's gateway gave onWebSocketConnect: the
     * handshake as Workerman parsed it into $_GET, $_SERVER and $_COOKIE,
     * which are set to it too.
     */
    private function webSocketData(array $ws, array $server): array
    {
        $query = (string)($ws['q'] ?? '');
        $path = (string)($ws['p'] ?? '/');
        $get = $cookie = [];
        parse_str($query, $get);
        $headers = [];
        foreach ((array)($ws['h'] ?? []) as $name => $values) {
            $headers['HTTP_' . strtoupper(str_replace('-', '_', (string)$name))] = implode(', ', (array)$values);
        }
        if (isset($headers['HTTP_COOKIE'])) {
            parse_str(str_replace('; ', '&', $headers['HTTP_COOKIE']), $cookie);
        }
        $host = (string)($headers['HTTP_HOST'] ?? '');
        $_SERVER = $server + [
            'QUERY_STRING' => $query,
            'REQUEST_METHOD' => 'GET',
            'REQUEST_URI' => $query === '' ? $path : "$path?$query",
            'SERVER_PROTOCOL' => 'HTTP/1.1',
            'SERVER_NAME' => preg_replace('/:\d+$/', '', $host),
        ] + $headers;
        $_GET = $get;
        $_COOKIE = $cookie;
        return ['get' => $_GET, 'server' => $_SERVER, 'cookie' => $_COOKIE];
    }

    /** Calls $eventHandler::$method if it has one; what it throws is logged, the event counts as handled. */
    private function call(string $method, array $args): void
    {
        $h = [$this->eventHandler, $method];
        if (!is_callable($h)) {
            return;
        }
        try {
            $h(...$args);
        } catch (\Throwable $e) {
            if ($method === 'onWorkerStart') {
                throw $e;
            }
            $this->logError(sprintf('%s::%s(%s) threw %s: %s at %s:%d', $this->eventHandler, $method, Context::$client_id ?? '',
                get_class($e), $e->getMessage(), $e->getFile(), $e->getLine()));
        }
    }

    private function tellMaster(string $line): void
    {
        if ($this->pipe !== null) {
            @fwrite($this->pipe, "$line\n"); // under PIPE_BUF: one write, never interleaved
        }
    }

    private function forgetOld(float $now): void
    {
        foreach ($this->recent as $id => $st) {
            if ($st['running'] === $st['done'] && $now - $st['at'] > 60) {
                unset($this->recent[$id]);
            }
        }
        foreach ($this->gone as $id => $at) {
            if ($now - $at > self::GONE_FOR) {
                unset($this->gone[$id]);
            }
        }
    }

    /** Logs errors clients can cause, at most 20 a second. */
    private function logError(string $msg): void
    {
        $now = microtime(true);
        if ($now - $this->errorsSince >= 1.0) {
            $this->errors = 0;
            $this->errorsSince = $now;
        }
        if (++$this->errors <= 20) {
            self::log($msg);
        }
    }

    /** @internal */
    public static function log(string $msg): void
    {
        fwrite(STDERR, sprintf("%s %s[%d] %s\n", date('Y-m-d H:i:s'), 'BusinessWorker', getmypid(), $msg));
    }
}
