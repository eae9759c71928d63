"""facecast's packets, decoded with python-osc's parsers and json, checked against the receivers' own specs.

Sources (as of the dates in the commit that added this file):

* VMC: sh-akira/VirtualMotionCaptureProtocol, docs/english.markdown (Performer -> Marionette messages),
  docs/performer-spec.markdown (what a Performer accepts from an Assistant); VRM 0.x / 1.0 preset names
  (vrm-c/vrm-specification).
* VRChat: docs.vrchat.com "OSC Eye Tracking" (addresses, units, signs, the 15°-up / 20°-right example) and
  "OSC Avatar Parameters" (the per-avatar config file); OSC 1.1 booleans ``T``/``F``.
* VRCFaceTracking: benaclejames/VRCFaceTracking VRCFaceTracking.Core/Params/Expressions/*.cs (v2 names),
  OSC/DataTypes/BinaryBaseParameter.cs (binary rule); Adjerry91/VRCFaceTracking-Templates 7.0.2
  Prefabs/MA_UE_VRCFT.prefab (the template's parameter list and bit layout).
* VTube Studio: DenchiSoft/VTubeStudio README.md (JSON samples) and Files/ErrorID.cs (error 454).

The byte fixtures are the OSC 1.0/1.1 encodings of the specs' example values; they pin the wire format.
"""

from __future__ import annotations

import json
import random

import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.osc_packet import OscPacket

from facecast.bridges.osc import OscInt, osc_message
from facecast.bridges.vmc import VmcEncoder
from facecast.bridges.vrchat import (
    FLOAT_NAMES,
    SIGNED,
    TEMPLATE_BINARY,
    AvatarParameters,
    VrchatEncoder,
    unified_expressions,
)
from facecast.bridges.vtube_studio_protocol import (
    APIError,
    inject_request,
    parameter_ranges,
    parameter_values,
    parse_message,
    response_data,
)
from facecast.motion import ARKIT_BLENDSHAPES, Blink, Gaze, HeadPose, MotionFrame


def elements(datagram: bytes) -> list[OscMessage]:
    """The messages of one datagram (a bundle or a bare message), parsed by python-osc."""
    return [timed.message for timed in OscPacket(datagram).messages]


def tags(message: OscMessage) -> str:
    """The type tag string of a parsed message (``,sf`` ...)."""
    start = message.dgram.index(b",")
    return message.dgram[start:message.dgram.index(b"\0", start)].decode()


def raw_elements(datagram: bytes) -> list[bytes]:
    """Each bundle element's exact bytes."""
    bundle = OscBundle(datagram)
    return [content.dgram for content in bundle]


# --------------------------------------------------------------------------- VMC

#: english.markdown, Performer -> Marionette: address -> type tags.
VMC_PERFORMER = {"/VMC/Ext/OK": ",i", "/VMC/Ext/T": ",f", "/VMC/Ext/Bone/Pos": ",sfffffff",
                 "/VMC/Ext/Blend/Val": ",sf", "/VMC/Ext/Blend/Apply": ","}
#: performer-spec.markdown: what a Performer accepts from an Assistant (the ones with fixed signatures).
VMC_ASSISTANT_ACCEPTED = {"/VMC/Ext/Hmd/Pos": ",sfffffff", "/VMC/Ext/Con/Pos": ",sfffffff",
                          "/VMC/Ext/Tra/Pos": ",sfffffff", "/VMC/Ext/Blend/Val": ",sf",
                          "/VMC/Ext/Blend/Apply": ",", "/VMC/Ext/Set/Eye": ",ifff"}
VRM0_PRESETS = {"Neutral", "A", "I", "U", "E", "O", "Blink", "Blink_L", "Blink_R", "Joy", "Angry", "Sorrow",
                "Fun", "LookUp", "LookDown", "LookLeft", "LookRight"}
VRM1_PRESETS = {"happy", "angry", "sad", "relaxed", "surprised", "aa", "ih", "ou", "ee", "oh", "blink",
                "blinkLeft", "blinkRight", "lookUp", "lookDown", "lookLeft", "lookRight", "neutral"}
#: Unity HumanBodyBones names for the bones facecast moves.
HUMAN_BODY_BONES = {"Neck", "Head"}


def test_vmc_sample_messages_byte_for_byte():
    """The spec's notation examples (/VMC/Ext/OK (int){1} ...) encode exactly like this, and so do ours."""
    assert osc_message("/VMC/Ext/OK", (OscInt(1),)).dgram.hex() == "2f564d432f4578742f4f4b002c69000000000001"
    assert osc_message("/VMC/Ext/T", (1.5,)).dgram.hex() == "2f564d432f4578742f5400002c6600003fc00000"
    assert osc_message("/VMC/Ext/Blend/Val", ("A", 0.5)).dgram.hex() == \
        "2f564d432f4578742f426c656e642f56616c00002c736600410000003f000000"
    assert osc_message("/VMC/Ext/Blend/Apply", ()).dgram.hex() == \
        "2f564d432f4578742f426c656e642f4170706c79000000002c000000"
    frame = MotionFrame(t=1.5, visemes={"sil": 0.5, "A": 0.5, "I": 0.0, "U": 0.0, "E": 0.0, "O": 0.0})
    sent = {e.hex() for d in VmcEncoder().encode(frame) for e in raw_elements(d)}
    assert {"2f564d432f4578742f4f4b002c69000000000001", "2f564d432f4578742f5400002c6600003fc00000",
            "2f564d432f4578742f426c656e642f56616c00002c736600410000003f000000",
            "2f564d432f4578742f426c656e642f4170706c79000000002c000000"} <= sent


@pytest.mark.parametrize("names", ["vrm0", "vrm1", "arkit"])
def test_vmc_performer_packets_use_only_spec_addresses_and_signatures(names):
    frame = MotionFrame(t=2.0, head=HeadPose(yaw=10, pitch=-5, roll=3), blink=Blink(0.2, 0.9), gaze=Gaze(5, 5))
    messages = [m for d in VmcEncoder(names).encode(frame) for m in elements(d)]
    for message in messages:
        assert VMC_PERFORMER.get(message.address) == tags(message), message.address
    assert {m.params[0] for m in messages if m.address == "/VMC/Ext/Bone/Pos"} == HUMAN_BODY_BONES
    blend = {m.params[0] for m in messages if m.address == "/VMC/Ext/Blend/Val"}
    expected = {"vrm0": VRM0_PRESETS, "vrm1": VRM1_PRESETS,
                "arkit": {n[0].upper() + n[1:] for n in ARKIT_BLENDSHAPES}}[names]
    assert blend <= expected and (names != "arkit" or blend == expected)
    assert messages[-1].address == "/VMC/Ext/T" and messages[-3].address == "/VMC/Ext/Blend/Apply"


def test_vmc_assistant_sends_only_what_a_performer_accepts():
    messages = [m for d in VmcEncoder("arkit", role="assistant").encode(MotionFrame(t=0.0)) for m in elements(d)]
    for message in messages:
        assert VMC_ASSISTANT_ACCEPTED.get(message.address) == tags(message), message.address
    assert {m.address for m in messages} >= {"/VMC/Ext/Tra/Pos", "/VMC/Ext/Blend/Val", "/VMC/Ext/Blend/Apply"}


# --------------------------------------------------------------------------- VRChat native eye tracking

def test_vrchat_eye_tracking_example_and_signs():
    """docs.vrchat.com: a target 15° up and 20° to the user's right is CenterPitchYaw (-15.252, 20.128);
    LeftRightPitchYaw's example (L pitch, L yaw, R pitch, R yaw) encodes to these 56 bytes."""
    example = osc_message("/tracking/eye/LeftRightPitchYaw", (-14.903, 23.592, -15.560, 16.503))
    assert example.dgram.hex() == ("2f747261636b696e672f6579652f4c65667452696768745069746368596177002c66666666000000"
                                   "c16e72b041bcbc6ac178f5c341840625")
    # facecast: up is pitch > 0; the user's right is image left, yaw < 0.
    frame = MotionFrame(t=0.0, gaze=Gaze(yaw=-20.128, pitch=15.252), blink=Blink(0.0, 0.0))
    messages = {m.address: m for d in VrchatEncoder().encode(frame) for m in elements(d)}
    look = messages["/tracking/eye/LeftRightPitchYaw"]
    assert tags(look) == ",ffff" and look.params == pytest.approx([-15.252, 20.128, -15.252, 20.128], abs=1e-4)
    closed = messages["/tracking/eye/EyesClosedAmount"]
    assert tags(closed) == ",f" and closed.params == [0.0]


# --------------------------------------------------------------------------- VRCFaceTracking names and bits

#: Every v2 parameter VRCFaceTracking defines: UnifiedExpressions (base shapes), UnifiedSimpleExpressions,
#: and the combined shapes of UnifiedExpressionsParameters.cs (Vector2 "Eye*" params become *X and *Y).
VRCFT_BASE = """EyeSquintRight EyeSquintLeft EyeWideRight EyeWideLeft BrowPinchRight BrowPinchLeft BrowLowererRight
BrowLowererLeft BrowInnerUpRight BrowInnerUpLeft BrowOuterUpRight BrowOuterUpLeft NasalDilationRight NasalDilationLeft
NasalConstrictRight NasalConstrictLeft CheekSquintRight CheekSquintLeft CheekPuffRight CheekPuffLeft CheekSuckRight
CheekSuckLeft JawOpen JawRight JawLeft JawForward JawBackward JawClench JawMandibleRaise MouthClosed LipSuckUpperRight
LipSuckUpperLeft LipSuckLowerRight LipSuckLowerLeft LipSuckCornerRight LipSuckCornerLeft LipFunnelUpperRight
LipFunnelUpperLeft LipFunnelLowerRight LipFunnelLowerLeft LipPuckerUpperRight LipPuckerUpperLeft LipPuckerLowerRight
LipPuckerLowerLeft MouthUpperUpRight MouthUpperUpLeft MouthUpperDeepenRight MouthUpperDeepenLeft NoseSneerRight
NoseSneerLeft MouthLowerDownRight MouthLowerDownLeft MouthUpperRight MouthUpperLeft MouthLowerRight MouthLowerLeft
MouthCornerPullRight MouthCornerPullLeft MouthCornerSlantRight MouthCornerSlantLeft MouthFrownRight MouthFrownLeft
MouthStretchRight MouthStretchLeft MouthDimpleRight MouthDimpleLeft MouthRaiserUpper MouthRaiserLower MouthPressRight
MouthPressLeft MouthTightenerRight MouthTightenerLeft TongueOut TongueUp TongueDown TongueRight TongueLeft TongueRoll
TongueBendDown TongueCurlUp TongueSquish TongueFlat TongueTwistRight TongueTwistLeft SoftPalateClose ThroatSwallow
NeckFlexRight NeckFlexLeft""".split()
VRCFT_SIMPLE = """BrowUpRight BrowUpLeft BrowDownRight BrowDownLeft MouthSmileRight MouthSmileLeft MouthSadRight
MouthSadLeft""".split()
VRCFT_COMBINED = """EyeX EyeY EyeLeftX EyeLeftY EyeRightX EyeRightY PupilDilation PupilDiameterLeft PupilDiameterRight
PupilDiameter EyeOpenLeft EyeOpenRight EyeOpen EyeClosedLeft EyeClosedRight EyeClosed EyeWide EyeLidLeft EyeLidRight
EyeLid EyeSquint EyesSquint BrowUp BrowDown BrowInnerUp BrowOuterUp BrowExpressionRight BrowExpressionLeft
BrowExpression JawX JawZ CheekSquint CheekPuffSuckLeft CheekPuffSuckRight CheekPuffSuck CheekSuck MouthUpperX
MouthLowerX MouthX LipSuckUpper LipSuckLower LipSuck LipFunnelUpper LipFunnelLower LipFunnel LipPuckerUpper
LipPuckerLower LipPuckerRight LipPuckerLeft LipPucker LipSuckFunnelUpper LipSuckFunnelLower LipSuckFunnelLowerLeft
LipSuckFunnelLowerRight LipSuckFunnelUpperLeft LipSuckFunnelUpperRight MouthUpperUp MouthLowerDown MouthOpen
MouthStretch MouthTightener MouthPress MouthDimple NoseSneer MouthTightenerStretch MouthTightenerStretchLeft
MouthTightenerStretchRight MouthCornerYLeft MouthCornerYRight MouthCornerY SmileFrownRight SmileFrownLeft SmileFrown
SmileSadRight SmileSadLeft SmileSad TongueX TongueY TongueArchY TongueShape""".split()
VRCFT_V2 = frozenset(VRCFT_BASE + VRCFT_SIMPLE + VRCFT_COMBINED)
#: Their range is -1..1 (differences of two shapes, or gaze).
VRCFT_SIGNED = frozenset("""EyeX EyeY EyeLeftX EyeLeftY EyeRightX EyeRightY BrowExpressionRight BrowExpressionLeft
BrowExpression JawX JawZ CheekPuffSuckLeft CheekPuffSuckRight CheekPuffSuck MouthUpperX MouthLowerX MouthX
LipSuckFunnelUpper LipSuckFunnelLower LipSuckFunnelLowerLeft LipSuckFunnelLowerRight LipSuckFunnelUpperLeft
LipSuckFunnelUpperRight MouthTightenerStretch MouthTightenerStretchLeft MouthTightenerStretchRight MouthCornerYLeft
MouthCornerYRight MouthCornerY SmileFrownRight SmileFrownLeft SmileFrown SmileSadRight SmileSadLeft SmileSad TongueX
TongueY TongueArchY TongueShape""".split())

#: VRCFaceTracking-Templates 7.0.2, MA_UE_VRCFT.prefab: the face-tracking parameters (FT/v2/...) and how they sync.
TEMPLATE_SYNCED_FLOATS = ["EyeLeftX", "EyeRightX", "EyeY", "EyeLidLeft", "EyeLidRight", "JawOpen", "MouthClosed"]
TEMPLATE_3_BITS = """EyeSquintLeft EyeSquintRight PupilDilation NoseSneer JawForward LipSuckUpper LipSuckLower LipFunnel
LipPucker MouthUpperUpRight MouthUpperUpLeft MouthLowerDown MouthStretchLeft MouthStretchRight MouthRaiserUpper
MouthRaiserLower MouthPress MouthTightenerLeft MouthTightenerRight TongueOut TongueRoll""".split()
TEMPLATE_3_BITS_NEGATIVE = """BrowExpressionLeft BrowExpressionRight CheekPuffSuckLeft CheekPuffSuckRight JawX MouthX
SmileFrownRight SmileFrownLeft TongueX TongueY""".split()
TEMPLATE_BOOLS = ["EyeTrackingActive", "LipTrackingActive", "EyeDilationEnable", "VisemesEnable",
                  "FacialExpressionsDisabled", "FaceTrackingEmulation", "FaceTrackingLimits", "FT/EyeSync",
                  "RemoteModeActive", "State/TrackingActive"]


def template_avatar_config() -> dict:
    """The OSC config VRChat would write for an avatar with the 7.0.2 UE template (docs.vrchat.com schema)."""
    parameters: dict[str, str] = {f"FT/v2/{n}": "Float" for n in TEMPLATE_SYNCED_FLOATS}
    for name in TEMPLATE_3_BITS + TEMPLATE_3_BITS_NEGATIVE:
        parameters[f"FT/v2/{name}"] = "Float"  # local only, still an avatar parameter
        parameters.update({f"FT/v2/{name}{b}": "Bool" for b in (1, 2, 4)})
        if name in TEMPLATE_3_BITS_NEGATIVE:
            parameters[f"FT/v2/{name}Negative"] = "Bool"
    parameters.update({name: "Bool" for name in TEMPLATE_BOOLS})
    parameters["Smoothing/Local"] = "Float"
    return {"id": "avtr_template", "name": "Template 7.0.2", "parameters": [
        {"name": n, "input": {"address": f"/avatar/parameters/{n}", "type": t},
         "output": {"address": f"/avatar/parameters/{n}", "type": t}} for n, t in parameters.items()]}


def test_every_vrchat_name_is_a_vrcfacetracking_v2_parameter_with_its_range():
    assert set(FLOAT_NAMES) <= VRCFT_V2, sorted(set(FLOAT_NAMES) - VRCFT_V2)
    assert SIGNED & set(FLOAT_NAMES) == VRCFT_SIGNED & set(FLOAT_NAMES)
    assert {n for n in TEMPLATE_SYNCED_FLOATS + TEMPLATE_3_BITS + TEMPLATE_3_BITS_NEGATIVE} <= VRCFT_V2


def test_default_bit_layout_is_the_templates_for_every_name_facecast_drives():
    driven = set(FLOAT_NAMES)
    assert TEMPLATE_BINARY == {n: 3 for n in TEMPLATE_3_BITS + TEMPLATE_3_BITS_NEGATIVE if n in driven}
    assert {n for n in TEMPLATE_3_BITS_NEGATIVE if n in driven} <= SIGNED
    assert not {n for n in TEMPLATE_3_BITS if n in driven} & SIGNED
    assert not set(TEMPLATE_SYNCED_FLOATS) & set(TEMPLATE_BINARY)  # synced as floats: no bits needed


def decode_remote(synced: dict[str, object], config: dict) -> dict[str, float]:
    """What a remote player's animator sees: the synced floats as they are, binary names from their bits.

    VRCFaceTracking's template decode: value = ±(Σ bit_i·2^i) / (2^N − 1), sign from <Name>Negative.
    """
    names = {p["name"] for p in config["parameters"]}
    out = {}
    for name in TEMPLATE_SYNCED_FLOATS:
        if f"FT/v2/{name}" in synced:
            out[name] = synced[f"FT/v2/{name}"]
    for name in TEMPLATE_3_BITS + TEMPLATE_3_BITS_NEGATIVE:
        bits = [f"FT/v2/{name}{b}" for b in (1, 2, 4)]
        if not all(b in synced for b in bits):
            continue
        k = sum(1 << i for i, b in enumerate(bits) if synced[b] is True)
        negative = f"FT/v2/{name}Negative" in names and synced.get(f"FT/v2/{name}Negative") is True
        out[name] = (-1.0 if negative else 1.0) * k / 7.0
    return out


@pytest.mark.parametrize("seed", range(5))
def test_a_template_avatar_animates_for_remote_players_from_facecasts_bits(seed):
    """The template's synced parameters (7 floats, the rest as 3 bits) rebuilt from facecast's packets."""
    rng = random.Random(seed)
    config = template_avatar_config()
    encoder = VrchatEncoder()
    report = encoder.set_avatar(AvatarParameters.from_config(json.loads(json.dumps(config))))
    frame = MotionFrame(t=0.0, blink=Blink(rng.random(), rng.random()), gaze=Gaze(rng.uniform(-30, 30), 0.0),
                        expressions={n: rng.random() for n in ARKIT_BLENDSHAPES
                                     if not n.startswith(("eyeBlink", "eyeLook"))})
    received: dict[str, object] = {}
    for datagram in encoder.encode(frame):
        assert len(datagram) <= 1472
        for message in elements(datagram):
            assert message.address.startswith("/avatar/parameters/") and len(message.params) == 1
            received[message.address[len("/avatar/parameters/"):]] = message.params[0]
    assert received["EyeTrackingActive"] is True and received["LipTrackingActive"] is True
    # facecast never touches what it does not drive: pupils, tongue direction, the template's own toggles.
    assert not any(k.startswith(("FT/v2/PupilDilation", "FT/v2/TongueX", "FT/v2/TongueRoll", "VisemesEnable"))
                   for k in received)
    # The avatar has its own eyelid and gaze parameters: VRChat's native eye tracking stays off for it.
    assert report.native == ()
    expected = unified_expressions(frame)
    remote = decode_remote(received, config)
    assert set(remote) == {n for n in TEMPLATE_SYNCED_FLOATS + TEMPLATE_3_BITS + TEMPLATE_3_BITS_NEGATIVE
                           if n in FLOAT_NAMES}
    for name, value in remote.items():
        tolerance = 1e-6 if name in TEMPLATE_SYNCED_FLOATS else 1.0 / 7.0
        assert abs(value - expected[name]) <= tolerance, (name, value, expected[name])
    assert "PupilDilation" not in report.lacking  # only names facecast sends can be lacking
    assert not set(report.lacking) & set(TEMPLATE_SYNCED_FLOATS + TEMPLATE_3_BITS + TEMPLATE_3_BITS_NEGATIVE)


def test_vrcft_bool_parameter_on_the_wire():
    """OSC 1.1 booleans carry no argument bytes: ``,T`` / ``,F`` (VRChat docs: "T for true or F for false")."""
    true = osc_message("/avatar/parameters/FT/v2/JawOpen1", (True,)).dgram
    assert true.hex() == "2f6176617461722f706172616d65746572732f46542f76322f4a61774f70656e310000002c540000"
    assert osc_message("/avatar/parameters/FT/v2/JawOpen1", (False,)).dgram == true[:-4] + b",F\0\0"
    frame = MotionFrame(t=0.0, expressions={"jawOpen": 1.0})
    sent = {e for d in VrchatEncoder(binary={"JawOpen": 1}).encode(frame) for e in raw_elements(d)}
    assert true in sent


# --------------------------------------------------------------------------- VTube Studio README samples

README_INJECT_REQUEST = json.loads('''{"apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0", "requestID": "SomeID",
 "messageType": "InjectParameterDataRequest",
 "data": {"faceFound": false, "mode": "set",
          "parameterValues": [{"id": "FaceAngleX", "value": 12.31},
                              {"id": "MyNewParamName", "weight": 0.8, "value": 0.7}]}}''')
README_INJECT_RESPONSE = '''{"apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0", "timestamp": 1625405710728,
 "requestID": "SomeID", "messageType": "InjectParameterDataResponse", "data": {}}'''
README_LIST_RESPONSE = '''{"apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0", "timestamp": 1625405710728,
 "requestID": "SomeID", "messageType": "InputParameterListResponse",
 "data": {"modelLoaded": true, "modelName": "My Currently Loaded Model", "modelID": "UniqueIDOfModel",
  "customParameters": [
   {"name": "MyCustomParamName1", "addedBy": "My Plugin Name", "value": 12.4, "min": -30, "max": 30, "defaultValue": 0},
   {"name": "MyCustomParamName2", "addedBy": "My Plugin Name", "value": 0.833, "min": -10, "max": 10,
    "defaultValue": 0},
   {"name": "MyCustomParamName3", "addedBy": "My Other Plugin Name", "value": 0, "min": 0, "max": 1,
    "defaultValue": 0}],
  "defaultParameters": [
   {"name": "FaceAngleX", "addedBy": "VTube Studio", "value": 45.78, "min": -30, "max": 30, "defaultValue": 0},
   {"name": "FacePositionX", "addedBy": "VTube Studio", "value": 8.33, "min": -10, "max": 10, "defaultValue": 0}]}}'''
#: The README's error shape, with ErrorID.cs's InjectDataParamControlledByOtherPlugin.
ERROR_454 = '''{"apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0", "timestamp": 1625405710728,
 "requestID": "SomeID", "messageType": "APIError",
 "data": {"errorID": 454, "message": "Only one plugin can send data for a parameter at a time."}}'''


def test_vts_inject_request_has_the_readme_shape():
    ours = inject_request(MotionFrame(t=0.0, head=HeadPose(yaw=12.31)), "SomeID")
    sample = README_INJECT_REQUEST
    assert set(ours) == set(sample) and {k: ours[k] for k in ("apiName", "apiVersion", "messageType")} == \
        {k: sample[k] for k in ("apiName", "apiVersion", "messageType")}
    assert set(ours["data"]) == set(sample["data"]) and ours["data"]["mode"] == "set"
    assert all(set(v) <= {"id", "value", "weight"} for v in ours["data"]["parameterValues"])
    assert ours["data"]["parameterValues"][0] == sample["data"]["parameterValues"][0]  # FaceAngleX 12.31
    assert response_data(parse_message(README_INJECT_RESPONSE), "InjectParameterDataResponse") == {}


def test_vts_parameter_list_sample_gives_the_ranges():
    data = response_data(parse_message(README_LIST_RESPONSE), "InputParameterListResponse")
    ranges = parameter_ranges(data)
    assert ranges["FaceAngleX"] == (-30.0, 30.0) and ranges["FacePositionX"] == (-10.0, 10.0)
    assert ranges["MyCustomParamName3"] == (0.0, 1.0)
    values = parameter_values(MotionFrame(t=0.0, head=HeadPose(yaw=45.0, x=1.0)), ranges)
    assert values == [{"id": "FaceAngleX", "value": 30.0}, {"id": "FacePositionX", "value": 10.0}]


def test_vts_error_454_is_an_api_error_naming_no_parameter():
    with pytest.raises(APIError) as info:
        response_data(parse_message(ERROR_454), "InjectParameterDataResponse")
    assert info.value.error_id == 454 and "FaceAngle" not in info.value.message
