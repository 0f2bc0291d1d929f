# Sourced by lock-wheels.sh and build.sh: the wheel tags of the image's Python
# (Debian trixie: CPython 3.13, glibc 2.41, x86-64). One place, so the lock and the
# download can never disagree.
WHEEL_TARGET=(
  --only-binary=:all:
  --python-version 3.13 --implementation cp
  --abi cp313 --abi abi3 --abi none
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
  --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64
  --platform any
)
