<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/**
 * An nkey seed ("SU..."), to prove to a NATS server that we hold it: the
 * server sends a nonce in INFO, and CONNECT carries the public key and the
 * Ed25519 signature of the nonce. Needs ext-sodium.
 */
final class NKey
{
    private const SEED_PREFIX = 18 << 3; // "S"
    private const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

    private string $secret;
    public readonly string $publicKey;

    public function __construct(string $seed)
    {
        if (!function_exists('sodium_crypto_sign_seed_keypair')) {
            throw new ConnectionException('nats: nkey authentication needs the sodium extension');
        }
        $raw = self::base32Decode(trim($seed));
        if ($raw === null || strlen($raw) !== 36 || (ord($raw[0]) & 0xf8) !== self::SEED_PREFIX
            || self::crc16(substr($raw, 0, 34)) !== unpack('v', substr($raw, 34))[1]) {
            throw new ConnectionException('nats: the nkey seed is not a valid seed (expected "S" followed by base32, as `nk -gen user` prints)');
        }
        $type = ((ord($raw[0]) & 0x07) << 5) | ((ord($raw[1]) & 0xf8) >> 3);
        $pair = sodium_crypto_sign_seed_keypair(substr($raw, 2, 32));
        $this->secret = sodium_crypto_sign_secretkey($pair);
        $pub = chr($type) . sodium_crypto_sign_publickey($pair);
        $this->publicKey = self::base32Encode($pub . pack('v', self::crc16($pub)));
    }

    /** The signature CONNECT carries: unpadded base64url of the Ed25519 signature of nonce. */
    public function sign(string $nonce): string
    {
        return rtrim(strtr(base64_encode(sodium_crypto_sign_detached($nonce, $this->secret)), '+/', '-_'), '=');
    }

    private static function crc16(string $data): int
    {
        $crc = 0;
        for ($i = 0, $n = strlen($data); $i < $n; $i++) {
            $crc ^= ord($data[$i]) << 8;
            for ($b = 0; $b < 8; $b++) {
                $crc = ($crc & 0x8000) ? (($crc << 1) ^ 0x1021) : ($crc << 1);
            }
            $crc &= 0xffff;
        }
        return $crc;
    }

    private static function base32Decode(string $s): ?string
    {
        $out = '';
        $acc = 0;
        $bits = 0;
        for ($i = 0, $n = strlen($s); $i < $n; $i++) {
            $v = strpos(self::B32, $s[$i]);
            if ($v === false) {
                return null;
            }
            $acc = (($acc << 5) | $v) & 0xfff;
            $bits += 5;
            if ($bits >= 8) {
                $bits -= 8;
                $out .= chr(($acc >> $bits) & 0xff);
            }
        }
        return $out;
    }

    private static function base32Encode(string $s): string
    {
        $out = '';
        $acc = 0;
        $bits = 0;
        for ($i = 0, $n = strlen($s); $i < $n; $i++) {
            $acc = (($acc << 8) | ord($s[$i])) & 0xfff;
            $bits += 8;
            while ($bits >= 5) {
                $bits -= 5;
                $out .= self::B32[($acc >> $bits) & 31];
            }
        }
        if ($bits > 0) {
            $out .= self::B32[($acc << (5 - $bits)) & 31];
        }
        return $out;
    }
}
