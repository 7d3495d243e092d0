// Pure Kotlin logic (manifest contract, CAM maths, labels): `./gradlew :core:test`.
plugins { id("org.jetbrains.kotlin.jvm") }
kotlin { jvmToolchain(17) }
dependencies {
    implementation("org.json:json:20240303")
    testImplementation("junit:junit:4.13.2")
}
