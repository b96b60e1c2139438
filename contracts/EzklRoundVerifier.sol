// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IPocMarketplace} from "./interfaces/IPocMarketplace.sol";
import {IRoundVerifier} from "./interfaces/IRoundVerifier.sol";

/// @title IHalo2Verifier
/// @notice The ezkl-generated Halo2 (KZG, BN254) verifier of the round circuit.
interface IHalo2Verifier {
    /// @notice Verifies `proof` for the public `instances`; reverts or returns false when it is invalid.
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external view returns (bool);
}

/// @title EzklRoundVerifier
/// @notice Binds an ezkl round proof to the marketplace's on-chain data: it rebuilds the circuit's public instances
/// from the trainers' on-chain feature commitments and the posted outlier flags and scores, then asks the Halo2
/// verifier. A proof over other features, other flags or scores, or another round's commitments, does not verify.
/// @dev Instance layout of the round circuit (`zk/circuit.py`, `slots` = K):
/// `[featureHash_0..K-1, witnessHash, ok, outlier_0..K-1, score_0..K-1, rejected_0..K-1]`.
/// Feature hashes of unused and rejected slots are the hash of the zero feature vector (a rejected submission's
/// commitment may have no known preimage: it is refused before the decision, not bound); flags are `0` or `one`;
/// scores are the posted int128 scores as field elements (`p - |s|` for negatives). The aggregator supplies
/// `abi.encode(bytes halo2Proof, uint256 witnessHash, uint256 rejectedMask)` as the proof: the witness hash binds
/// values the circuit checks but the chain does not know, and the rejection mask lists submissions refused before
/// the decision (bit i = submission i; unused slots must be set), each recorded with its reason in the round report.
contract EzklRoundVerifier is IRoundVerifier {
    /// @dev BN254 scalar field modulus.
    uint256 private constant FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617;

    /// @notice The Halo2 verifier of the round circuit.
    IHalo2Verifier public immutable halo2;
    /// @notice Number of submission slots of the circuit (rounds with more submissions cannot be proven).
    uint32 public immutable slots;
    /// @notice Fixed-point encoding of 1 in the circuit's outputs (flags are 0 or this).
    uint256 public immutable one;
    /// @notice Poseidon hash of the all-zero feature vector (the instance of an unused slot).
    uint256 public immutable emptyFeatureHash;

    /// @notice The constructor arguments are inconsistent.
    error InvalidVerifierConfig(address halo2, uint32 slots, uint256 one);

    /// @notice Sets the circuit's verifier and shape.
    /// @param halo2_ The ezkl-generated verifier.
    /// @param slots_ The circuit's slot count (1..255).
    /// @param one_ Fixed-point 1 of the outputs (`2**outputScale`).
    /// @param emptyFeatureHash_ Poseidon hash of the zero feature vector.
    constructor(IHalo2Verifier halo2_, uint32 slots_, uint256 one_, uint256 emptyFeatureHash_) {
        if (address(halo2_).code.length == 0 || slots_ == 0 || slots_ > 255 || one_ == 0 || one_ >= FIELD) {
            revert InvalidVerifierConfig(address(halo2_), slots_, one_);
        }
        halo2 = halo2_;
        slots = slots_;
        one = one_;
        emptyFeatureHash = emptyFeatureHash_;
    }

    /// @inheritdoc IRoundVerifier
    /// @dev Never reverts on bad input: anything malformed answers false (the marketplace then reverts
    /// `ProofRejected`).
    function verifyRound(
        uint256, /* projectId: bound through the feature commitments, which are per round */
        uint32, /* round: likewise */
        bytes32, /* submissionsDigest: the marketplace already checked `post.submissions` against it */
        IPocMarketplace.RoundPost calldata post,
        bytes calldata proof
    ) external view returns (bool ok) {
        uint256 n = post.submissions.length;
        uint256 k = slots;
        if (n > k || proof.length < 96) return false;
        (bytes memory halo2Proof, uint256 witnessHash, uint256 rejectedMask) = abi.decode(proof, (bytes, uint256, uint256));
        uint256[] memory inst = new uint256[](4 * k + 2);
        for (uint256 i = 0; i < k; ++i) {
            bool used = i < n;
            bool rejected = (rejectedMask >> i) & 1 == 1;
            if (!used && !rejected) return false;
            inst[i] = rejected ? emptyFeatureHash : uint256(post.submissions[i].featureCommitment);
            inst[k + 2 + i] = (used ? post.outliers[i] : true) ? one : 0;
            inst[2 * k + 2 + i] = used ? _felt(post.scores[i]) : 0;
            inst[3 * k + 2 + i] = rejected ? one : 0;
        }
        if (rejectedMask >> k != 0) return false;
        inst[k] = witnessHash;
        inst[k + 1] = one;
        try halo2.verifyProof(halo2Proof, inst) returns (bool valid) {
            return valid;
        } catch {
            // The generated verifier reverts with empty data on an invalid proof.
            return false;
        }
    }

    function _felt(int128 s) private pure returns (uint256) {
        return s >= 0 ? uint256(uint128(s)) : FIELD - uint256(uint128(-s));
    }
}
