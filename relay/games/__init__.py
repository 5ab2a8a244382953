"""Games that ship with Stadium (the `arena` demo). They use only the public room API
(`relay`), as a studio's own rooms do, and are registered by the `stadium` CLI."""
