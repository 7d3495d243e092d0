// swift-tools-version:6.0
// Pure logic of the catdog iOS app (manifest contract, pixels, orientation, squash, CAM maths,
// labels), Foundation only, so it builds and is tested on Linux as on macOS:
//   cd ios_app/CatDogCore && swift test       (`make apps-test` runs it against tests/golden/apps.json)
import PackageDescription

let package = Package(
    name: "CatDogCore",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [.library(name: "CatDogCore", targets: ["CatDogCore"])],
    targets: [
        .target(name: "CatDogCore"),
        .testTarget(name: "CatDogCoreTests", dependencies: ["CatDogCore"]),
    ],
    swiftLanguageModes: [.v6]
)
