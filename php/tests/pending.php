<?php

// Gateway::acceptClient and rejectClient against a real gateway started
// with pending connections: php/phptest dials two clients (ids in
// CLIENT_IDS), this accepts the first as uid "user-7" and rejects the
// second, and the Go test checks what the clients see.
declare(strict_types=1);

require __DIR__ . '/bootstrap.php';

use GatewayWorker\Lib\Gateway;

Gateway::$natsUrls = [getenv('NATS_URL')];
[$c0, $c1] = explode(',', getenv('CLIENT_IDS'));
check('acceptClient', Gateway::acceptClient($c0, 'user-7'), true);
check('rejectClient', Gateway::rejectClient($c1, 'no entry'), true);
check('acceptClient gone', Gateway::acceptClient('g1-zzzzzz-1'), false);
done();
