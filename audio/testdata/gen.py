# Regenerates the fixtures in this directory with numpy / Python's wave /
# scipy / sox (run with /usr/bin/python3 from audio/testdata). The values are
# hand-chosen so the Go tests can assert them without Python.
import subprocess
import wave

import numpy as np
import scipy.io.wavfile

# k/4 for k in -5..6: exact in float16, float32 and float64.
A = (np.arange(12, dtype=np.float64).reshape(3, 4) - 5) / 4
np.save("c_f4_le.npy", A.astype("<f4"))
np.save("c_f8_be.npy", A.astype(">f8"))
np.save("f_f2_le.npy", np.asfortranarray(A.astype("<f2")))
np.save("f_f4_be_3d.npy", np.asfortranarray(np.arange(24).reshape(2, 3, 4).astype(">f4")))
np.save("c_i2.npy", np.arange(-3, 3).astype("<i2"))


def pcm(name, width, channels, raw):
    with wave.open(name, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(8000)
        w.writeframes(raw)


pcm("pcm8.wav", 1, 1, bytes([0, 1, 64, 128, 192, 255]))
i24 = [-(2**23), -1, 1, 2**22, 2**23 - 1]
pcm("pcm24.wav", 3, 1, b"".join(v.to_bytes(3, "little", signed=True) for v in i24))
pcm("pcm16_stereo.wav", 2, 2, np.array([16384, -16384, 32767, -32768, 0, 2], "<i2").tobytes())
i32 = [-(2**31), -(2**16), 0, 2**30, 2**31 - 1]
pcm("pcm32.wav", 4, 1, np.array(i32, "<i4").tobytes())
scipy.io.wavfile.write("float32.wav", 16000, np.array([0.5, -0.25, 1.5, -1, 0], np.float32))
scipy.io.wavfile.write("float64.wav", 16000, np.array([0.5, -0.25, 1.5, -1, 1e-3], np.float64))
# sox writes WAVE_FORMAT_EXTENSIBLE for 24-bit, with an odd (15-byte) data
# chunk followed by a pad byte; -D disables dither so values stay exact.
subprocess.run(["sox", "-D", "pcm24.wav", "-e", "signed", "-b", "24", "ext24.wav"], check=True)
