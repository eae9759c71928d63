#!/usr/bin/env bash
# A real PortAudio capture device on machines with no sound card (CI, containers, servers).
#
# Starts a private PulseAudio server whose default source is a FIFO: whatever is
# written into DIR/mic.fifo (raw s16le, interleaved) is what a microphone on
# that server "hears". PortAudio reaches it through ALSA's pulse plugin as the
# devices "pulse" and "default" once PULSE_SERVER points at the server.
# The pipe source is paced by its writer: feed it in real time, and keep
# feeding (silence when idle), or capture stalls as an unplugged mic would.
#
# Debian packages: libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins
#
#   scripts/virtual_mic.sh start DIR [RATE] [CHANNELS]   # prints PULSE_SERVER=...
#   scripts/virtual_mic.sh stop DIR
set -euo pipefail

usage() { echo "usage: $0 start DIR [RATE] [CHANNELS] | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1
dir=$(realpath -m "$2")
rate=${3:-48000}
channels=${4:-2}
pidfile="$dir/pulse/pid"  # pulseaudio keeps it under its XDG_RUNTIME_DIR

case "$action" in
start)
    for tool in pulseaudio pactl; do
        command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install pulseaudio pulseaudio-utils libasound2-plugins" >&2; exit 3; }
    done
    mkdir -p "$dir"
    rm -f "$dir/mic.fifo"
    # A private HOME/runtime dir keeps this server away from any desktop session's.
    # --daemonize returns once the server accepts connections.
    HOME="$dir" XDG_RUNTIME_DIR="$dir" pulseaudio -n --daemonize=yes --exit-idle-time=-1 \
        --use-pid-file=yes --log-target="file:$dir/pulse.log" \
        -L "module-native-protocol-unix socket=$dir/native auth-anonymous=1" \
        -L "module-pipe-source source_name=facecast_virtual_mic file=$dir/mic.fifo format=s16le rate=$rate channels=$channels" \
        -L "module-null-sink"
    export PULSE_SERVER="unix:$dir/native"
    pactl set-default-source facecast_virtual_mic
    echo "PULSE_SERVER=$PULSE_SERVER"
    ;;
stop)
    if [ -f "$pidfile" ]; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        # Gone once it is a zombie too: a container's init may take seconds to reap it.
        for _ in $(seq 100); do
            state=$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$pid/stat" 2>/dev/null || true)
            [ -n "$state" ] && [ "$state" != Z ] || break
            sleep 0.05
        done
        rm -f "$pidfile"
    fi
    ;;
*) usage ;;
esac
