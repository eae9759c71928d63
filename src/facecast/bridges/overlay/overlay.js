// facecast overlay: draws the newest avatar frame from ws://<this page's host>/frames.
//
// Binary frame format, version 2 (big-endian; facecast/bridges/frame_codec.py is the reference):
//   offset 0   3 bytes  magic "FCF"
//   offset 3   uint8    format version (2)
//   offset 4   uint32   frame index
//   offset 8   float64  t, the frame's presentation time (s)
//   offset 16  float64  capture time (daemon's monotonic clock, s; NaN if none)
//   offset 24  ...      WebP image with alpha
"use strict";

(() => {
  const HEADER_BYTES = 24;
  const MAGIC = [0x46, 0x43, 0x46]; // "FCF"
  const VERSION = 2;
  const RECONNECT_MIN_MS = 250;
  const RECONNECT_MAX_MS = 4000;

  const canvas = document.getElementById("avatar");
  const context = canvas.getContext("2d");
  // Read by the tests and handy in OBS's "Interact" window.
  const state = { connected: false, frames: 0, index: -1, t: NaN, captureTime: NaN, errors: 0 };
  window.facecastOverlay = state;

  const params = new URLSearchParams(location.search);
  const param = (name) => {
    const value = Number(params.get(name));
    return params.has(name) && Number.isFinite(value) ? value : null;
  };
  const box = { x: param("x") ?? 0, y: param("y") ?? 0, width: param("width"), height: param("height") };

  // Fit the avatar into the box, centred, aspect ratio kept.
  function layout() {
    if (!canvas.width || !canvas.height) return;
    const width = box.width ?? innerWidth - box.x;
    const height = box.height ?? innerHeight - box.y;
    const scale = Math.min(width / canvas.width, height / canvas.height);
    canvas.style.width = `${canvas.width * scale}px`;
    canvas.style.height = `${canvas.height * scale}px`;
    canvas.style.left = `${box.x + (width - canvas.width * scale) / 2}px`;
    canvas.style.top = `${box.y + (height - canvas.height * scale) / 2}px`;
  }
  addEventListener("resize", layout);

  function parse(buffer) {
    if (buffer.byteLength <= HEADER_BYTES) return null;
    const view = new DataView(buffer);
    if (MAGIC.some((byte, i) => view.getUint8(i) !== byte) || view.getUint8(3) !== VERSION) return null;
    return {
      index: view.getUint32(4),
      t: view.getFloat64(8),
      captureTime: view.getFloat64(16),
      // WebP ("RIFF") when the frame has transparent pixels, JPEG (FF D8) when it is opaque
      image: new Blob([new Uint8Array(buffer, HEADER_BYTES)],
                      { type: view.getUint8(HEADER_BYTES) === 0xff ? "image/jpeg" : "image/webp" }),
    };
  }

  // Latest frame wins: while one image decodes, newer frames replace the waiting one.
  let waiting = null;
  let drawing = false;
  async function drawNewest() {
    if (drawing) return;
    drawing = true;
    while (waiting) {
      const frame = waiting;
      waiting = null;
      try {
        const bitmap = await createImageBitmap(frame.image);
        if (!state.connected) {  // the connection closed while decoding: keep the page empty
          bitmap.close();
          continue;
        }
        if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
          canvas.width = bitmap.width;
          canvas.height = bitmap.height;
          layout();
        }
        context.clearRect(0, 0, canvas.width, canvas.height);
        context.drawImage(bitmap, 0, 0);
        bitmap.close();
        Object.assign(state, { frames: state.frames + 1, index: frame.index, t: frame.t,
                               captureTime: frame.captureTime });
      } catch (error) {
        state.errors += 1;
      }
    }
    drawing = false;
  }

  let delay = RECONNECT_MIN_MS;
  function connect() {
    // A daemon bound beyond loopback needs its token on every endpoint: pass on the page's own.
    const token = params.get("token");
    const query = token ? `?token=${encodeURIComponent(token)}` : "";
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/frames${query}`);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      state.connected = true;
      delay = RECONNECT_MIN_MS;
    };
    socket.onmessage = (event) => {
      const frame = event.data instanceof ArrayBuffer ? parse(event.data) : null;
      if (!frame) {
        state.errors += 1;
        return;
      }
      waiting = frame;
      drawNewest();
    };
    // The daemon stopped or restarts: show nothing rather than a frozen face, and keep trying.
    socket.onclose = () => {
      state.connected = false;
      waiting = null;
      context.clearRect(0, 0, canvas.width, canvas.height);
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    };
  }
  connect();
})();
