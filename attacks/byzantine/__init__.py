"""Byzantine attacks: what Byzantine peers send their neighbours.

==================  ==========================================
name                module
==================  ==========================================
gaussian            attacks/byzantine/gaussian.py
sign_flip           attacks/byzantine/sign_flip.py
label_flip          attacks/byzantine/label_flip.py
alie                attacks/byzantine/alie.py
ipm                 attacks/byzantine/ipm.py
fang_krum           attacks/byzantine/fang.py
fang_trimmed_mean   attacks/byzantine/fang.py
min_max, min_sum    attacks/byzantine/min_max.py
mimic               attacks/byzantine/mimic.py
backdoor            attacks/byzantine/backdoor.py
dissensus           attacks/byzantine/dissensus.py
bristle_evasion     attacks/byzantine/bristle_evasion.py
split_noise         attacks/byzantine/split_noise.py
sybil_churn         attacks/byzantine/sybil_churn.py
==================  ==========================================

``_reference.py`` defines the head an update-based attack measures updates against.
"""
