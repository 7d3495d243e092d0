// Pure Kotlin logic (manifest contract, pixels, orientation, squash, CAM maths, labels):
// `./gradlew :core:test` runs its JUnit tests against ../tests/golden/apps.json.
plugins { id("org.jetbrains.kotlin.jvm") }
kotlin { jvmToolchain(17) }
dependencies {
    // Android ships org.json: compile against it, never package it (lint's DuplicatePlatformClasses)
    compileOnly("org.json:json:20240303")
    testImplementation("org.json:json:20240303")
    testImplementation("junit:junit:4.13.2")
}
tasks.test {
    systemProperty("catdog.golden", rootProject.file("../tests/golden/apps.json").absolutePath)
    inputs.file(rootProject.file("../tests/golden/apps.json"))
}
