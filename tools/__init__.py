"""Tools the tests and the benchmarks share (not tests themselves):

golden            the apps' golden file from a real ART_DIR (`make golden`) and its checks
faults            the hostile-input server driver and checks (tests/test_fuzz.py, test_soak.py, bench fuzz/soak)
mutations         mutated real photos: truncations, bombs, wrong formats...
badfiles          a folder of broken files beside real photos
mediapipe_client  what runs inside the MediaPipe venv for tests/test_mediapipe.py
"""
