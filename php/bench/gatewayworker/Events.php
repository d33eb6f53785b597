<?php
// The bench protocol (docs/architecture.md) as a GatewayWorker Events class:
// a:<p> to everyone, j:<g> joins <g> and answers ok, g:<g>:<p> to group <g>,
// anything else echoed to its sender.

declare(strict_types=1);

use GatewayWorker\Lib\Gateway;

class Events
{
    public static function onMessage(string $clientId, mixed $message): void
    {
        $message = (string) $message;
        if (str_starts_with($message, 'a:')) {
            Gateway::sendToAll(substr($message, 2));
        } elseif (str_starts_with($message, 'j:')) {
            Gateway::joinGroup($clientId, substr($message, 2));
            Gateway::sendToCurrentClient('ok');
        } elseif (str_starts_with($message, 'g:') && ($colon = strpos($message, ':', 2)) !== false) {
            Gateway::sendToGroup(substr($message, 2, $colon - 2), substr($message, $colon + 1));
        } else {
            Gateway::sendToCurrentClient($message);
        }
    }
}
