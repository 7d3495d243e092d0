#!/usr/bin/env bash
# Compile android_demo/core (main + tests) with a Kotlin compiler and run its JUnit tests against
# tests/golden/apps.json, without Gradle or a Maven repository (none is reachable here):
#   - Kotlin compiler: org.jetbrains.kotlin.cli.jvm.K2JVMCompiler from the PyPI wheel
#     kotlin-jupyter-kernel (its -all.jar), cached under .cache/kotlin/;
#   - JUnit 4, Hamcrest and org.json (Android's own implementation): Debian's junit4, libhamcrest-java
#     and libandroid-json-java, installed with apt-get when run as root.
# In Android Studio or CI the same sources build with Gradle: ./gradlew :core:test
set -euo pipefail
cd "$(dirname "$0")/../.."                      # repository root
KERNEL_VERSION=0.19.0.944                       # carries Kotlin 2.3
CACHE="${CATDOG_CACHE:-.cache}/kotlin/$KERNEL_VERSION"
BUILD=android_demo/core/build/catdog-cli
PIP="${PIP:-.venv/bin/pip}"
JARS=/usr/share/java
say() { echo "core_test: $*" >&2; }

need_apt=()
command -v javac >/dev/null || need_apt+=(default-jdk-headless)
[ -f $JARS/junit4.jar ] || need_apt+=(junit4)
[ -f $JARS/hamcrest-core.jar ] || need_apt+=(libhamcrest-java)
[ -f $JARS/com.android.json.jar ] || need_apt+=(libandroid-json-java)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing ${need_apt[*]} (Debian)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    else
        say "missing ${need_apt[*]}: install them (apt-get install ${need_apt[*]}) and run again"; exit 2
    fi
fi

compiler="$CACHE/kotlin-compiler-all.jar" stdlib="$CACHE/kotlin-stdlib.jar"
if [ ! -f "$compiler" ] || [ ! -f "$stdlib" ]; then
    [ -x "$PIP" ] || PIP="python3 -m pip"
    say "fetching the Kotlin compiler (PyPI kotlin-jupyter-kernel==$KERNEL_VERSION) into $CACHE"
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    $PIP download -q --no-deps --only-binary :all: "kotlin-jupyter-kernel==$KERNEL_VERSION" -d "$tmp"
    mkdir -p "$CACHE"
    # the compiler (-all.jar) and the Kotlin standard library, out of the wheel (a zip)
    python3 - "$tmp"/*.whl "$compiler.tmp" "$stdlib.tmp" <<'PY'
import re, shutil, sys, zipfile
wheel, compiler, stdlib = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for pattern, out in ((r"jars/kotlin-jupyter-kernel-.*-all\.jar$", compiler), (r"jars/kotlin-stdlib-[0-9].*\.jar$", stdlib)):
        name = next(n for n in z.namelist() if re.search(pattern, n))
        with z.open(name) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
    mv "$compiler.tmp" "$compiler" && mv "$stdlib.tmp" "$stdlib"
fi

mapfile -t sources < <(find android_demo/core/src/main/kotlin android_demo/core/src/test/kotlin -name '*.kt' | sort)
stamp=$( (echo "$KERNEL_VERSION"; cat "${sources[@]}") | sha256sum | cut -c1-16)
classpath="$stdlib:$JARS/com.android.json.jar:$JARS/junit4.jar:$JARS/hamcrest-core.jar"
if [ "$(cat "$BUILD/stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$BUILD" && mkdir -p "$BUILD/classes"
    java -Xss8m -cp "$compiler" org.jetbrains.kotlin.cli.jvm.K2JVMCompiler -no-stdlib -no-reflect -jvm-target 17 \
        -Werror -cp "$classpath" -d "$BUILD/classes" "${sources[@]}"
    echo "$stamp" > "$BUILD/stamp"
fi
# the test classes: files under src/test/kotlin with @Test, named by path (catdog/core/CoreTest.kt -> catdog.core.CoreTest)
mapfile -t tests < <(cd android_demo/core/src/test/kotlin && grep -rl '@Test' --include='*.kt' . | sed 's|^\./||; s|\.kt$||; s|/|.|g' | sort)
java -Dcatdog.golden=tests/golden/apps.json -cp "$BUILD/classes:$classpath" org.junit.runner.JUnitCore "${tests[@]}"
