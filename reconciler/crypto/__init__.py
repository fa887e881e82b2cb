"""Client-side encryption: certificates, private keys, data-key wrapping and the
framed AES-256-GCM format of every stored object."""
