// Build with the Gradle wrapper (Gradle 8.9, JDK 17): ./gradlew :core:test :app:assembleDebug :app:lint
plugins {
    id("com.android.application") version "8.5.2" apply false
    id("org.jetbrains.kotlin.android") version "2.0.21" apply false
    id("org.jetbrains.kotlin.jvm") version "2.0.21" apply false
}
