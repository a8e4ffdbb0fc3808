# Sourced by the test scripts. make_venv DIR REQUIREMENTS: a venv with
# exactly those pins, reused while the pins are unchanged.
make_venv() {
    if [ ! -x "$1/bin/python" ] || ! cmp -s "$2" "$1/requirements.txt"; then
        rm -rf "$1"
        python3 -m venv "$1"
        "$1/bin/pip" install --quiet --disable-pip-version-check -r "$2"
        cp "$2" "$1/requirements.txt"
    fi
}
