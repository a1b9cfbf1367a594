"""Architecture description: elaboration/runtime configs and the layout of every packed word.
Imports nothing else of nmaccel (except the leaf nmaccel.errors)."""
