// The ES module the SDK imports as "@msgpack/msgpack" (see the import map in index.html): the
// names of @msgpack/msgpack 3.1.3's UMD build (msgpack.min.js, loaded first as a classic script).
const m = globalThis.MessagePack;
if (!m) throw new Error("msgpack.min.js did not load: the demo page cannot decode the relay's messages");
export const { encode, decode, decodeMulti, decodeAsync, Encoder, Decoder, DecodeError, ExtData, ExtensionCodec } = m;
