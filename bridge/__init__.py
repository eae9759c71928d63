"""Outputs to the streaming ecosystem (virtual webcam, VMC, VRChat, VTube Studio, WebSocket)."""
