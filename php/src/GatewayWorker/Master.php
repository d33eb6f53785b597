<?php

declare(strict_types=1);

namespace GatewayWorker;

use GatewayWorker\Nats\Connection;
use GatewayWorker\Nats\Envelope;
use GatewayWorker\Nats\NatsException;

/**
 * @internal The master process of BusinessWorker::runAll(): it forks the
 * worker processes, restarts those that die, stops them on SIGTERM or
 * SIGINT, and keeps their running batches alive.
 *
 * A PHP worker is one thread: while a handler blocks (a 10 s database
 * call) it cannot send the progress reports that tell the gateway the
 * batch still runs. The master, which runs no handler, sends them: a
 * worker writes "R <client> <seq> <reply>" to its pipe before the
 * handlers of a batch and "D <client> <seq>" after them, and the master
 * publishes AckWorking for each running batch every 250 ms. When a worker
 * dies, its pipe ends and its reports stop with it, so the gateway sends
 * its batch to another worker after AckTimeout, as for a Go worker.
 */
final class Master
{
    private const PROGRESS_EVERY = 0.25;

    /** @var array<int, array{worker: BusinessWorker, id: int, pipe: resource, buf: string, batch: ?array{0: string, 1: int|string, 2: string, 3: float}}> by pid */
    private array $children = [];
    /** @var array<string, float> "<worker index>/<id>" => when it last started */
    private array $started = [];
    /** @var list<array{0: int, 1: int}> [worker index, id] waiting to be started again */
    private array $restarts = [];
    private bool $stopping = false;
    private ?Connection $nc = null;

    /** @param list<BusinessWorker> $workers */
    public function __construct(private readonly array $workers)
    {
    }

    public function run(): void
    {
        if ($this->workers === []) {
            throw new NatsException('BusinessWorker::runAll: no BusinessWorker was created');
        }
        foreach ($this->workers as $w) {
            $w->processes();
        }
        pcntl_async_signals(true);
        $stop = function (int $sig): void {
            $this->stopping = true;
            foreach (array_keys($this->children) as $pid) {
                posix_kill($pid, SIGTERM);
            }
        };
        pcntl_signal(SIGTERM, $stop);
        pcntl_signal(SIGINT, $stop);
        pcntl_signal(SIGPIPE, SIG_IGN);
        if (function_exists('cli_set_process_title')) {
            @cli_set_process_title($this->workers[0]->name . ': master process');
        }
        $this->nc = $this->workers[0]->connect('master');
        $this->nc->connect();
        foreach ($this->workers as $wi => $w) {
            for ($id = 0; $id < $w->count; $id++) {
                $this->fork($wi, $id);
            }
        }
        BusinessWorker::log('master started ' . count($this->children) . ' worker processes');
        $next = microtime(true) + self::PROGRESS_EVERY;
        while ($this->children !== [] || (!$this->stopping && $this->restarts !== [])) {
            $this->read(max(0.0, $next - microtime(true)));
            $this->reap();
            $now = microtime(true);
            if ($now >= $next) {
                $this->progress($now);
                $next = $now + self::PROGRESS_EVERY;
            }
            if (!$this->stopping) {
                $this->restart($now);
            }
        }
        $this->nc->close();
        BusinessWorker::log('master stopped');
    }

    private function fork(int $wi, int $id): void
    {
        $pair = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
        if ($pair === false) {
            throw new NatsException('BusinessWorker: no pipe for a worker process');
        }
        $this->started["$wi/$id"] = microtime(true);
        $pid = pcntl_fork();
        if ($pid < 0) {
            throw new NatsException('BusinessWorker: fork failed: ' . pcntl_strerror(pcntl_get_last_error()));
        }
        if ($pid === 0) {
            // The master's socket and pipes are not ours to write to or close.
            $this->nc->forget();
            foreach ($this->children as $c) {
                fclose($c['pipe']);
            }
            $this->children = [];
            fclose($pair[0]);
            pcntl_signal(SIGTERM, SIG_DFL);
            pcntl_signal(SIGINT, SIG_DFL);
            $code = 1;
            try {
                $code = $this->workers[$wi]->serve($id, $pair[1]);
            } catch (\Throwable $e) {
                BusinessWorker::log("worker $id failed: " . get_class($e) . ': ' . $e->getMessage() . ' at ' . $e->getFile() . ':' . $e->getLine());
            }
            exit($code);
        }
        fclose($pair[1]);
        stream_set_blocking($pair[0], false);
        $this->children[$pid] = ['worker' => $wi, 'id' => $id, 'pipe' => $pair[0], 'buf' => '', 'batch' => null];
    }

    /** Reads what the workers say, waiting at most $wait seconds. */
    private function read(float $wait): void
    {
        $r = array_column($this->children, 'pipe');
        if ($r === []) {
            usleep((int)($wait * 1e6));
            return;
        }
        $w = $e = null;
        if (@stream_select($r, $w, $e, (int)$wait, (int)(fmod($wait, 1.0) * 1e6)) < 1) {
            return; // nothing, or a signal
        }
        foreach ($this->children as $pid => &$c) {
            if (!in_array($c['pipe'], $r, true)) {
                continue;
            }
            $data = fread($c['pipe'], 65536);
            if ($data === '' || $data === false) {
                $c['batch'] = null; // it died (or is dying): its batch's reports stop now
                continue;
            }
            $c['buf'] .= $data;
            while (($nl = strpos($c['buf'], "\n")) !== false) {
                $f = explode(' ', substr($c['buf'], 0, $nl));
                $c['buf'] = substr($c['buf'], $nl + 1);
                if ($f[0] === 'R' && count($f) === 4) {
                    $c['batch'] = [$f[1], ctype_digit($f[2]) && $f[2] <= PHP_INT_MAX ? (int)$f[2] : $f[2], $f[3], microtime(true)];
                } elseif ($f[0] === 'D') {
                    $c['batch'] = null;
                }
            }
        }
        unset($c);
    }

    /** Collects workers that exited; those that were not told to stop start again. */
    private function reap(): void
    {
        while (($pid = pcntl_waitpid(-1, $status, WNOHANG)) > 0) {
            $c = $this->children[$pid] ?? null;
            if ($c === null) {
                continue;
            }
            unset($this->children[$pid]);
            fclose($c['pipe']);
            $how = pcntl_wifsignaled($status) ? 'signal ' . pcntl_wtermsig($status) : 'status ' . pcntl_wexitstatus($status);
            if (!$this->stopping) {
                BusinessWorker::log("worker {$c['id']} (pid $pid) exited with $how: starting it again");
                $this->restarts[] = [$c['worker'], $c['id']];
            }
        }
    }

    private function restart(float $now): void
    {
        foreach ($this->restarts as $i => [$wi, $id]) {
            if ($now - ($this->started["$wi/$id"] ?? 0) >= BusinessWorker::RESTART_EVERY) {
                unset($this->restarts[$i]);
                $this->fork($wi, $id);
            }
        }
        $this->restarts = array_values($this->restarts);
    }

    /** Reports every batch that has run for a while (the first report at most 375 ms after its start). */
    private function progress(float $now): void
    {
        try {
            // Answer the server's PINGs, which come whether or not we publish.
            $this->nc->process(0);
        } catch (NatsException $e) {
            BusinessWorker::log('NATS: ' . $e->getMessage());
        }
        foreach ($this->children as $c) {
            if ($c['batch'] !== null && $now - $c['batch'][3] >= self::PROGRESS_EVERY / 2) {
                [$client, $seq, $reply] = $c['batch'];
                try {
                    $this->nc->publish($reply, Envelope::ack($client, $seq, Envelope::ACK_WORKING));
                } catch (NatsException $e) {
                    BusinessWorker::log('progress report not sent: ' . $e->getMessage());
                }
            }
        }
    }
}
