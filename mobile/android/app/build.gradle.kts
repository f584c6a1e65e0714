// Copy a bundle's bundle.json, modifier.tflite and face_detector.tflite into
// app/src/main/assets/ before building (build.sh does this from its BUNDLE argument).
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.privacyanon.app"
    compileSdk = 34
    defaultConfig {
        applicationId = "org.privacyanon.app"
        minSdk = 26
        targetSdk = 34
        versionCode = 1
        versionName = "0.1"
    }
    androidResources {
        noCompress += "tflite" // the interpreter maps the models straight from the APK
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_1_8
        targetCompatibility = JavaVersion.VERSION_1_8
    }
    kotlinOptions { jvmTarget = "1.8" }
    testOptions { unitTests.all { it.systemProperty("golden.dir", System.getProperty("golden.dir") ?: "") } }
}

dependencies {
    implementation("org.tensorflow:tensorflow-lite:2.16.1")
    testImplementation("junit:junit:4.13.2")
}
