// For Android Studio users (CI builds with build.sh, not Gradle: Google's Maven repository,
// where the Android Gradle plugin lives, is not reachable there).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "privacy-anon"
include(":app")
