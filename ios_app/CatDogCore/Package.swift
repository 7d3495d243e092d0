// swift-tools-version:5.9
// Pure logic of the catdog iOS app (manifest contract, CAM maths, labels), tested with XCTest:
//   cd ios_app/CatDogCore && swift test
import PackageDescription

let package = Package(
    name: "CatDogCore",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [.library(name: "CatDogCore", targets: ["CatDogCore"])],
    targets: [
        .target(name: "CatDogCore"),
        .testTarget(name: "CatDogCoreTests", dependencies: ["CatDogCore"]),
    ]
)
