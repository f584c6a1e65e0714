#!/usr/bin/env bash
# Builds the Android app into a signed debug APK without Android Studio, the SDK downloader or
# Google's Maven repository (none of which CI can reach), and runs the core's JVM tests.
#
#   mobile/android/build.sh tools                 install the toolchain (apt, npm, Maven Central)
#   mobile/android/build.sh test GOLDEN_DIR       JUnit: the Kotlin core against mobile/golden.py's vectors
#   mobile/android/build.sh apk BUNDLE [OUT.apk]  the APK with BUNDLE's files as assets
#
# The toolchain, all from registries: Debian bookworm aapt2, zipalign, apksigner, junit4, a JDK;
# the API-23 android.jar (libandroid-23-java) and dx (dalvik-exchange) from Debian bullseye
# (downloaded with apt-get download into the build folder, the system's apt sources untouched);
# kotlinc from npm (package.json here); the TensorFlow Lite AARs from Maven Central (pom.xml here).
# Everything lands in mobile/android/build/ (git-ignored). Android Studio users: see README.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${ANDROID_BUILD_DIR:-$HERE/build}
TOOLS=$BUILD/tools
mkdir -p "$TOOLS"

log() { echo "[android] $*"; }  # stdout: stderr stays for errors

tools() {
    local need=()
    for cmd in aapt2:aapt zipalign:zipalign apksigner:apksigner zip:zip unzip:unzip javac:openjdk-17-jdk-headless mvn:maven; do
        command -v "${cmd%%:*}" >/dev/null || need+=("${cmd#*:}")
    done
    [ -f /usr/share/java/junit4.jar ] || need+=(junit4)
    if [ ${#need[@]} -gt 0 ]; then
        log "apt-get install ${need[*]}"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    fi
    if [ ! -f "$TOOLS/android.jar" ] || [ ! -f "$TOOLS/dx.jar" ]; then
        log "android.jar and dx from Debian bullseye"
        local apt=$TOOLS/apt
        mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs" "$apt/x"
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main" > "$apt/sources.list"
        local opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
        apt-get "${opts[@]}" -q update >/dev/null
        (cd "$apt/debs" && apt-get "${opts[@]}" -q download libandroid-23-java dalvik-exchange >/dev/null 2>&1)
        for deb in "$apt"/debs/*.deb; do dpkg-deb -x "$deb" "$apt/x"; done
        cp "$apt/x/usr/lib/android-sdk/platforms/android-23/android.jar" "$TOOLS/android.jar"
        cp "$apt/x/usr/lib/android-sdk/build-tools/debian/lib/dx.jar" "$TOOLS/dx.jar"
        rm -rf "$apt"
    fi
    if [ ! -x "$TOOLS/node_modules/kotlin-compiler/bin/kotlinc" ]; then
        log "kotlinc (npm kotlin-compiler)"
        cp "$HERE/package.json" "$HERE/package-lock.json" "$TOOLS/"
        (cd "$TOOLS" && npm ci --no-audit --no-fund --silent)
    fi
    if [ ! -f "$TOOLS/tflite/tensorflow-lite-api.jar" ]; then
        log "TensorFlow Lite AARs (Maven Central)"
        mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies -DoutputDirectory="$TOOLS/aar" -Dmdep.stripVersion=true
        mkdir -p "$TOOLS/tflite"
        for name in tensorflow-lite tensorflow-lite-api; do
            rm -rf "$TOOLS/tflite/$name" && mkdir -p "$TOOLS/tflite/$name"
            unzip -q "$TOOLS/aar/$name.aar" -d "$TOOLS/tflite/$name"
            cp "$TOOLS/tflite/$name/classes.jar" "$TOOLS/tflite/$name.jar"
        done
    fi
}

KOTLINC() { "$TOOLS/node_modules/kotlin-compiler/bin/kotlinc" "$@"; }
STDLIB=$TOOLS/node_modules/kotlin-compiler/lib/kotlin-stdlib.jar
TFLITE_CP=$TOOLS/tflite/tensorflow-lite.jar:$TOOLS/tflite/tensorflow-lite-api.jar
JUNIT_CP=/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar

# One kotlinc run for the core, the Android shell and the JVM tests (kotlinc starts slowly).
compile() {
    local src=$HERE/app/src
    local stamp=$BUILD/classes.stamp
    local newest
    newest=$(find "$src" -name '*.kt' -newer "$stamp" 2>/dev/null | head -1 || true)
    if [ -f "$stamp" ] && [ -z "$newest" ]; then return; fi
    log "kotlinc"
    rm -rf "$BUILD/classes" && mkdir -p "$BUILD/classes"
    KOTLINC -nowarn -jvm-target 1.8 -cp "$TOOLS/android.jar:$TFLITE_CP:$JUNIT_CP" -d "$BUILD/classes" \
        $(find "$src/main/java" "$src/test/java" -name '*.kt') 2>&1 | grep -v '^warning' >&2 || true
    [ -f "$BUILD/classes/org/privacyanon/app/MainActivity.class" ] || { echo "error: kotlinc failed" >&2; exit 1; }
    touch "$stamp"
}

test_core() {
    local golden=${1:?usage: build.sh test GOLDEN_DIR}
    compile
    log "JUnit (JVM) against $golden"
    # the core classes only need the Kotlin stdlib: no android.jar on the test classpath
    java -Dgolden.dir="$golden" -cp "$BUILD/classes:$STDLIB:$JUNIT_CP" org.junit.runner.JUnitCore org.privacyanon.core.GoldenTest
}

apk() {
    local bundle=${1:?usage: build.sh apk BUNDLE [OUT.apk]}
    local out=${2:-$BUILD/privacy-anon-debug.apk}
    compile
    # the same checks the app makes, before anything is packaged: one line and exit 2 if bad
    java -cp "$BUILD/classes:$STDLIB" org.privacyanon.core.BundleKt "$bundle" >/dev/null
    local w=$BUILD/apk
    rm -rf "$w" && mkdir -p "$w/assets" "$w/dexin"
    for f in bundle.json modifier.tflite face_detector.tflite; do cp "$bundle/$f" "$w/assets/"; done
    log "aapt2 link (the .tflite assets stored uncompressed)"
    aapt2 link -o "$w/base.apk" -I "$TOOLS/android.jar" --manifest "$HERE/app/src/main/AndroidManifest.xml" \
        -A "$w/assets" -0 .tflite --min-sdk-version 26 --target-sdk-version 34
    log "dx (Kotlin stdlib without META-INF/versions, TFLite classes, the app)"
    cp "$STDLIB" "$w/dexin/stdlib.jar" && zip -q -d "$w/dexin/stdlib.jar" 'META-INF/versions/*' || true
    cp -r "$BUILD/classes" "$w/appclasses" && find "$w/appclasses" -name 'GoldenTest*' -delete
    java -cp "$TOOLS/dx.jar" com.android.dx.command.Main --dex --min-sdk-version=26 --output="$w/classes.dex" \
        "$w/appclasses" "$w/dexin/stdlib.jar" "$TOOLS/tflite/tensorflow-lite.jar" "$TOOLS/tflite/tensorflow-lite-api.jar"
    (cd "$w" && zip -q base.apk classes.dex)
    # the interpreter's native library, for phones (arm64, arm) and x86-64 emulators
    mkdir -p "$w/lib"
    for abi in arm64-v8a armeabi-v7a x86_64; do
        mkdir -p "$w/lib/$abi" && cp "$TOOLS/tflite/tensorflow-lite/jni/$abi/"*.so "$w/lib/$abi/"
    done
    (cd "$w" && zip -q -r base.apk lib)
    zipalign -f -p 4 "$w/base.apk" "$w/aligned.apk"
    local ks=$BUILD/debug.keystore
    [ -f "$ks" ] || keytool -genkeypair -keystore "$ks" -storepass android -keypass android -alias debug \
        -keyalg RSA -keysize 2048 -validity 3650 -dname "CN=privacy-anon debug" >/dev/null 2>&1
    mkdir -p "$(dirname "$out")"
    apksigner sign --ks "$ks" --ks-pass pass:android --key-pass pass:android --out "$out.tmp" "$w/aligned.apk"
    mv "$out.tmp" "$out" && rm -f "$out.tmp.idsig"
    apksigner verify "$out"
    log "built $out ($(du -h "$out" | cut -f1))"
}

case "${1:-}" in
    tools) tools ;;
    test) tools; test_core "${2:-}" ;;
    apk) tools; apk "${2:-}" "${3:-}" ;;
    *) echo "usage: build.sh tools | test GOLDEN_DIR | apk BUNDLE [OUT.apk]" >&2; exit 2 ;;
esac
