import Foundation

/// catdog's answer for a photo beyond cat or dog (`catdog.contract`): the model's `pet` output is the
/// probability that the photo shows a cat or a dog at all; under the manifest's `pet_threshold` the
/// verdict is "neither".
public enum Verdict {
    /// The verdict where pet < the manifest's pet_threshold (`catdog.contract.NEITHER`).
    public static let neither = "neither"
    /// What the app shows for it, with no percentages: cat and dog probabilities of a photo of
    /// neither mean nothing (`catdog.contract.NEITHER_TEXT`).
    public static let neitherText = "No cat or dog here"
}

/// `catdog.contract.verdict`: `Verdict.neither` where `pet` < `threshold`, else the label of the first
/// largest probability (a tie goes to the first label). The comparison is in double, as Python's: the
/// Float `pet` widens exactly, and a threshold that is no Float is not rounded first.
public func verdict(probabilities: [Float], pet: Float, threshold: Double, labels: [String]) -> String {
    if Double(pet) < threshold { return Verdict.neither }
    return topLabel(probabilities: probabilities, labels: labels).label
}

/// What the app shows under the photo for a verdict: "No cat or dog here" for neither, else
/// `labelText` ("It's a cat\ncat 99.6 %   dog 0.4 %").
public func verdictText(verdict: String, probabilities: [Float], labels: [String]) -> String {
    verdict == Verdict.neither ? Verdict.neitherText : labelText(probabilities: probabilities, labels: labels)
}
