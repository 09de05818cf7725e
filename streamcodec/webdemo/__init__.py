"""The WebRTC peer demo: a local page whose microphone audio goes through the SDK as codec
tokens and comes back decoded (``streamcodec webrtc-demo``).

Modules: ``bridge`` (one browser session: its peer connection, the A/B token call and the
optional impaired link), ``server`` (page + websocket signalling on one port),
``browser`` (headless Chromium with a fake microphone, DevTools screenshots),
``roundtrip`` (envelope correlation of sent and returned audio).
"""
